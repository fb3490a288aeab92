//! Blob contents the seeders push: a tiny gzip'd tar layer and OCI / Docker image configs.

use serde_json::json;

/// A platform split into its parts (`os/architecture[/variant]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PlatformParts {
    pub(super) os: String,
    pub(super) architecture: String,
    pub(super) variant: Option<String>,
}

impl PlatformParts {
    /// Parses `linux/amd64` or `linux/arm64/v8`; panics on anything else.
    pub(super) fn parse(platform: &str) -> PlatformParts {
        let parts: Vec<&str> = platform.split('/').collect();
        match parts.as_slice() {
            [os, arch] => PlatformParts {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: None,
            },
            [os, arch, variant] => PlatformParts {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: Some((*variant).to_owned()),
            },
            _ => panic!("platform {platform:?} is not os/architecture[/variant]"),
        }
    }

    /// The `platform` object of an index entry.
    pub(super) fn to_json(&self) -> serde_json::Value {
        let mut value = json!({ "architecture": self.architecture, "os": self.os });
        if let Some(variant) = &self.variant {
            value["variant"] = json!(variant);
        }
        value
    }
}

/// A layer: its gzip'd bytes (the blob) and the digest of the uncompressed tar (the diff id).
#[derive(Clone, Debug)]
pub(super) struct Layer {
    pub(super) gzip: Vec<u8>,
    pub(super) diff_id: String,
}

impl Layer {
    /// A layer holding one file, `keel-test.txt`, with `content`.
    pub(super) fn with_file(content: &str) -> Layer {
        let tar = tar_one_file("keel-test.txt", content.as_bytes());
        Layer {
            diff_id: super::sha256_digest(&tar),
            gzip: gzip_stored(&tar),
        }
    }
}

/// An image config JSON (the same shape for OCI and Docker schema 2 images).
pub(super) fn image_config(created: &str, platform: &PlatformParts, diff_id: &str) -> Vec<u8> {
    let mut config = json!({
        "created": created,
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": created, "created_by": "keel-registry test support" }],
    });
    if let Some(variant) = &platform.variant {
        config["variant"] = json!(variant);
    }
    serde_json::to_vec(&config).expect("config serializes")
}

/// A ustar archive with one regular file.
fn tar_one_file(name: &str, content: &[u8]) -> Vec<u8> {
    fn octal(field: &mut [u8], value: u64) {
        // Zero-padded octal digits followed by NUL, filling the field.
        let text = format!("{:0width$o}\0", value, width = field.len() - 1);
        field.copy_from_slice(text.as_bytes());
    }
    assert!(name.len() < 100, "tar name too long");
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut header[100..108], 0o644); // mode
    octal(&mut header[108..116], 0); // uid
    octal(&mut header[116..124], 0); // gid
    octal(&mut header[124..136], content.len() as u64); // size
    octal(&mut header[136..148], 1_700_000_000); // mtime
    header[156] = b'0'; // regular file
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field set to spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());

    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.resize(tar.len() + 1024, 0); // two zero blocks end the archive
    tar
}

/// A gzip member holding `data` in stored (uncompressed) deflate blocks.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none())); // BFINAL on the last block, BTYPE 00
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE), bit by bit: the inputs are a few KiB.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
