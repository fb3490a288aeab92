//! Fuzzes the webhook payload parsers of every endpoint (`WebhookSource::parse_payload`): the
//! input is a body, fed to each source in turn.
//!
//! Checked: no panic; every reported push names a tagged image without digest whose display
//! parses back to the same reference; no push is reported twice; an error never quotes the
//! body of a JSON object (webhooks may carry capability URLs).
#![no_main]

use keel_core::ImageRef;
use keel_core::trigger::WebhookSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    for source in WebhookSource::ALL {
        match source.parse_payload(body) {
            Ok(events) => {
                for (i, event) in events.iter().enumerate() {
                    assert!(event.image.tag().is_some(), "{source}: {event} has no tag");
                    assert!(
                        event.image.digest().is_none(),
                        "{source}: {event} has a digest"
                    );
                    let shown = event.image.to_string();
                    assert_eq!(
                        ImageRef::parse(&shown).ok().as_ref(),
                        Some(&event.image),
                        "{source}: {shown:?} does not parse back"
                    );
                    assert!(event.to_string().starts_with(&shown));
                    assert!(!events[..i].contains(event), "{source}: {event} twice");
                }
            }
            Err(e) => {
                let message = e.to_string();
                // A JSON object: a body that is not could be a copy of the message itself.
                if body.len() >= 24
                    && let Ok(text) = std::str::from_utf8(body)
                    && text.trim_start().starts_with('{')
                {
                    assert!(
                        !message.contains(text),
                        "{source}: the error quotes the body: {message}"
                    );
                }
            }
        }
    }
});
