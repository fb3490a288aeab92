//! Container image references and their parts: [`Tag`], [`Digest`], [`ImageRef`] and
//! [`Platform`].
//!
//! [`ImageRef`] follows the grammar of the distribution project's `reference` package
//! (`name [":" tag] ["@" digest]`) and Docker's normalisation of short names:
//!
//! * the first `/`-separated part of the name is a registry host only if it contains `.` or
//!   `:`, is `localhost`, or contains an upper-case letter; otherwise the registry is
//!   `docker.io`;
//! * `index.docker.io` and `registry-1.docker.io` are spelled `docker.io`;
//! * on `docker.io` a single-component repository gets `library/` in front;
//! * a reference with neither tag nor digest gets the tag `latest`.
//!
//! ```text
//! nginx                      -> docker.io/library/nginx:latest
//! bitnami/redis              -> docker.io/bitnami/redis:latest
//! localhost:5000/a/b:1.0     -> localhost:5000/a/b:1.0
//! ghcr.io/o/r@sha256:<hex>   -> ghcr.io/o/r@sha256:<hex>   (no tag)
//! ```
//!
//! Every type displays in a form that parses back to an equal value, and (de)serialises
//! with serde as that string.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::ParseError;

mod digest;
mod image_ref;
mod platform;
mod tag;
#[cfg(test)]
mod tests;

pub use self::digest::Digest;
pub use self::image_ref::ImageRef;
pub use self::platform::Platform;
pub use self::tag::{Tag, is_valid_tag};

pub(crate) const TAG_KIND: &str = "tag";
pub(crate) const DIGEST_KIND: &str = "digest";
pub(crate) const REFERENCE_KIND: &str = "image reference";
pub(crate) const PLATFORM_KIND: &str = "platform";

/// `Err` saying that a `kind` (one of the kinds above) must not be empty, for an empty `input`.
fn non_empty(kind: &'static str, input: &str) -> Result<(), ParseError> {
    if input.is_empty() {
        return Err(ParseError::new(
            kind,
            input,
            format!("{kind} must not be empty"),
        ));
    }
    Ok(())
}

/// The longest tag the grammar allows, in bytes (all tag characters are ASCII).
pub const MAX_TAG_LEN: usize = 128;

/// The longest repository name (`registry/repository`) the grammar allows, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// The registry of unqualified names, as [`ImageRef::registry`] spells it.
pub const DOCKER_HUB: &str = "docker.io";

/// The tag a reference without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";

// ---------------------------------------------------------------------------------------------
// serde: every type as its display string
// ---------------------------------------------------------------------------------------------

struct FromStrVisitor<T>(PhantomData<T>, &'static str);

impl<T: FromStr<Err = ParseError>> Visitor<'_> for FromStrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

/// `FromStr` through the type's own parser, and serde as the display string, which parses
/// back to an equal value.
macro_rules! text_forms {
    ($($ty:ty => $parse:path, $expecting:literal),* $(,)?) => {$(
        impl FromStr for $ty {
            type Err = ParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $parse(s)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(FromStrVisitor(PhantomData, $expecting))
            }
        }
    )*};
}

text_forms! {
    Tag => Tag::new, "an image tag string",
    Digest => Digest::new, "a digest string, algorithm:encoded",
    ImageRef => ImageRef::parse, "an image reference string",
    Platform => Platform::parse, "a platform string, os/architecture[/variant]",
}

/// A validated string: displayed, borrowed and referenced as the string itself.
macro_rules! validated_str {
    ($($ty:ty),* $(,)?) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }
    )*};
}

validated_str!(Tag, Digest);
