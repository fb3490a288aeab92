//! [`Platform`]: `os/architecture[/variant]`.

use std::fmt;

use super::{PLATFORM_KIND, non_empty};
use crate::error::ParseError;

/// A platform an image is built for: `os/architecture[/variant]`, e.g. `linux/amd64`,
/// `linux/arm64/v8`, `linux/arm/v7`, `windows/amd64`.
///
/// Parsing lower-cases and spells architectures the OCI way (`aarch64` → `arm64`,
/// `x86_64`/`x86-64` → `amd64`); the variant is kept as written, or absent.
/// [`Platform::matches`] fills in default variants.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl Platform {
    /// Parses `os/architecture[/variant]`.
    ///
    /// # Errors
    /// A [`ParseError`] for an empty part, fewer than 2 or more than 3 parts, or a character
    /// other than a letter, digit, `_`, `.` or `-`.
    pub fn parse(input: &str) -> Result<Platform, ParseError> {
        non_empty(PLATFORM_KIND, input)?;
        let parts: Vec<&str> = input.split('/').collect();
        if parts.len() < 2 {
            return Err(ParseError::new(
                PLATFORM_KIND,
                input,
                "platform must be os/architecture[/variant], the architecture is missing",
            )
            .at(input.len(), input.len()));
        }
        if parts.len() > 3 {
            let extra = parts[..3].iter().map(|p| p.len() + 1).sum::<usize>();
            return Err(ParseError::new(
                PLATFORM_KIND,
                input,
                format!(
                    "platform must be os/architecture[/variant], got {} parts",
                    parts.len()
                ),
            )
            .at(extra, input.len()));
        }
        Platform::from_parts(input, &parts)
    }

    /// A platform from its parts, validated and normalised as [`Platform::parse`] does.
    ///
    /// # Errors
    /// As for [`Platform::parse`]; a part containing `/` is a bad character.
    pub fn new(
        os: &str,
        architecture: &str,
        variant: Option<&str>,
    ) -> Result<Platform, ParseError> {
        let mut parts = vec![os, architecture];
        parts.extend(variant);
        Platform::from_parts(&parts.join("/"), &parts)
    }

    fn from_parts(input: &str, parts: &[&str]) -> Result<Platform, ParseError> {
        const NAMES: [&str; 3] = ["os", "architecture", "variant"];
        let mut offset = 0;
        for (part, name) in parts.iter().zip(NAMES) {
            if part.is_empty() {
                return Err(ParseError::new(
                    PLATFORM_KIND,
                    input,
                    format!("platform {name} must not be empty"),
                )
                .at(offset, offset));
            }
            if let Some((i, c)) = part
                .char_indices()
                .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
            {
                return Err(ParseError::new(
                    PLATFORM_KIND,
                    input,
                    format!(
                        "platform {name} may contain only letters, digits, '_', '.' and '-', \
                         found {c:?}"
                    ),
                )
                .at(offset + i, offset + i + c.len_utf8()));
            }
            offset += part.len() + 1;
        }
        let architecture = parts[1].to_ascii_lowercase();
        let architecture = match architecture.as_str() {
            "aarch64" => "arm64".to_owned(),
            "x86_64" | "x86-64" => "amd64".to_owned(),
            _ => architecture,
        };
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture,
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// The operating system, e.g. `linux`.
    pub fn os(&self) -> &str {
        &self.os
    }

    /// The CPU architecture, e.g. `amd64`, `arm64`.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The architecture variant, e.g. `v7`, when one was given.
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    /// The variant, or the architecture's default variant when none was given: `v8` for
    /// `arm64`, `v7` for `arm`, `v1` for `amd64`.
    pub fn effective_variant(&self) -> Option<&str> {
        self.variant().or(match self.architecture.as_str() {
            "arm64" => Some("v8"),
            "arm" => Some("v7"),
            "amd64" => Some("v1"),
            _ => None,
        })
    }

    /// Whether both name the same platform once default variants are filled in: `linux/arm64`
    /// matches `linux/arm64/v8` and `linux/arm` matches `linux/arm/v7`, but `linux/arm/v6`
    /// does not match `linux/arm/v7`. Symmetric.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && self.effective_variant() == other.effective_variant()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}
