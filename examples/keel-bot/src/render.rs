//! What the bot writes: Block Kit messages for approval requests and the replies to
//! commands.

use keel_core::approval::{ApprovalRequest, ApprovalState, VoteKind};
use serde_json::{Value, json};

/// The `action_id` of the Approve button.
pub const APPROVE_ACTION: &str = "keel_approve";
/// The `action_id` of the Reject button.
pub const REJECT_ACTION: &str = "keel_reject";

/// Escapes the three characters Slack's mrkdwn gives a meaning to.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `code` in backticks, with backticks taken out (they would end the span).
fn code(s: &str) -> String {
    format!("`{}`", escape(&s.replace('`', "'")))
}

/// A voter as Slack shows it: a mention when it is a Slack user id recorded by a delegate
/// (`slack:T0001/U024BE7LH` or `slack:U024BE7LH` → `<@U024BE7LH>`), else the name.
pub fn voter(v: &str) -> String {
    let id = v.rsplit_once(':').map_or(v, |(_, id)| id);
    let id = id.rsplit_once('/').map_or(id, |(_, user)| user);
    if is_slack_user_id(id) {
        format!("<@{id}>")
    } else {
        escape(v)
    }
}

/// Whether `s` looks like a Slack user id (`U…` or `W…`, upper-case letters and digits).
pub fn is_slack_user_id(s: &str) -> bool {
    (2..=32).contains(&s.len())
        && (s.starts_with('U') || s.starts_with('W'))
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn date(at: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        at.timestamp(),
        at.format("%Y-%m-%d %H:%M UTC")
    )
}

fn release_notes(url: &str) -> Option<String> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && !url.contains(['|', '<', '>', ' ', '\n']);
    ok.then(|| format!("<{url}|release notes>"))
}

/// The one-line summary of a request, also the notification text of its message.
pub fn summary(r: &ApprovalRequest) -> String {
    format!(
        "{} {}: {} -> {} ({}/{} approvals, request {})",
        r.plan.target,
        r.plan.id,
        r.plan.current,
        r.plan.new,
        r.approvals(),
        r.required,
        r.id
    )
}

fn votes_line(r: &ApprovalRequest) -> String {
    let by = |kind| {
        r.votes
            .iter()
            .filter(|v| v.kind == kind)
            .map(|v| voter(&v.voter))
            .collect::<Vec<_>>()
    };
    let yes = by(VoteKind::Approve);
    let no = by(VoteKind::Reject);
    let mut line = format!("Approvals: *{}/{}*", r.approvals(), r.required);
    if !yes.is_empty() {
        line.push_str(&format!(" by {}", yes.join(", ")));
    }
    if !no.is_empty() {
        line.push_str(&format!(" · rejected by {}", no.join(", ")));
    }
    line
}

/// The message of a request: details, votes, and the Approve/Reject buttons while it is
/// pending; its outcome once decided.
pub fn request_message(r: &ApprovalRequest) -> (String, Value) {
    let headline = match r.state {
        ApprovalState::Pending => ":hourglass: *Approval needed*".to_owned(),
        ApprovalState::Approved => ":white_check_mark: *Approved*".to_owned(),
        ApprovalState::Applied => ":rocket: *Approved and applied*".to_owned(),
        ApprovalState::Rejected => ":x: *Rejected*".to_owned(),
        ApprovalState::Expired => ":alarm_clock: *Expired*".to_owned(),
        ApprovalState::Superseded => ":fast_forward: *Superseded by a newer version*".to_owned(),
    };
    let mut text = format!(
        "{headline} for {} in {}\n{} → {}",
        code(&r.plan.id),
        code(&r.plan.target),
        code(&r.plan.current.to_string()),
        code(&r.plan.new.to_string()),
    );
    if let Some(d) = &r.digest {
        text.push_str(&format!("\nDigest: {}", code(d.as_str())));
    }
    text.push_str(&format!("\n{}", votes_line(r)));
    if r.state == ApprovalState::Pending {
        text.push_str(&format!(" · expires {}", date(r.deadline)));
    }
    if let Some(link) = r.release_notes.as_deref().and_then(release_notes) {
        text.push_str(&format!(" · {link}"));
    }
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}),
        json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": format!("Request {} · `/keel approve {}` or `/keel reject {} <reason>`", code(&r.id), escape(&r.id), escape(&r.id))}
        ]}),
    ];
    if r.state == ApprovalState::Pending {
        blocks.push(json!({
            "type": "actions",
            "block_id": format!("keel_approval_{}", r.id),
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE_ACTION,
                    "text": {"type": "plain_text", "text": "Approve"},
                    "style": "primary",
                    "value": r.id,
                },
                {
                    "type": "button",
                    "action_id": REJECT_ACTION,
                    "text": {"type": "plain_text", "text": "Reject"},
                    "style": "danger",
                    "value": r.id,
                },
            ],
        }));
    }
    let fallback = match r.state {
        ApprovalState::Pending => format!("Approval needed: {}", summary(r)),
        s => format!("{}: {}", s, summary(r)),
    };
    (fallback, Value::Array(blocks))
}

/// The message of a request that was deleted.
pub fn deleted_message(id: &str) -> (String, Value) {
    let text = format!(":wastebasket: Approval request {} was deleted.", code(id));
    (
        format!("Approval request {id} was deleted"),
        json!([{"type": "section", "text": {"type": "mrkdwn", "text": text}}]),
    )
}

/// An answer only the asking user sees.
pub fn ephemeral(text: impl Into<String>) -> Value {
    json!({"response_type": "ephemeral", "replace_original": false, "text": text.into()})
}

/// The usage of the slash command.
pub fn help(command: &str) -> String {
    let c = escape(command);
    format!(
        "Usage:\n• `{c} list`: the requests waiting for approval\n• `{c} approve <id> [comment]`\n• `{c} reject <id> [reason]`"
    )
}

/// The reply to `list`.
pub fn pending_list(requests: &[ApprovalRequest]) -> String {
    const MAX_LINES: usize = 20;
    if requests.is_empty() {
        return "Nothing is waiting for approval.".into();
    }
    let mut out = format!("{} request(s) waiting for approval:", requests.len());
    for r in requests.iter().take(MAX_LINES) {
        out.push_str(&format!(
            "\n• {} {} {}: {} → {} ({}/{}, expires {})",
            code(&r.id),
            escape(&r.plan.target),
            escape(&r.plan.id),
            escape(&r.plan.current.to_string()),
            escape(&r.plan.new.to_string()),
            r.approvals(),
            r.required,
            date(r.deadline),
        ));
    }
    if requests.len() > MAX_LINES {
        out.push_str(&format!("\n…and {} more", requests.len() - MAX_LINES));
    }
    out
}

/// The reply to a counted vote.
pub fn voted(kind: VoteKind, r: &ApprovalRequest) -> String {
    let verb = match kind {
        VoteKind::Approve => "approved",
        VoteKind::Reject => "rejected",
    };
    let outcome = match r.state {
        ApprovalState::Pending => format!(
            "{}/{} approvals so far; it still waits for more.",
            r.approvals(),
            r.required
        ),
        s => format!("The request is now *{s}*."),
    };
    format!(
        "You {verb} {} ({} → {}). {outcome}",
        code(&r.id),
        escape(&r.plan.current.to_string()),
        escape(&r.plan.new.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_mentions() {
        assert_eq!(escape("a<b>&c"), "a&lt;b&gt;&amp;c");
        for (name, shown) in [
            ("slack:U024BE7LH", "<@U024BE7LH>"),
            ("slack:T0001/U024BE7LH", "<@U024BE7LH>"),
            ("alice", "alice"),
            ("ops:<!channel>", "ops:&lt;!channel&gt;"),
        ] {
            assert_eq!(voter(name), shown, "voter {name}");
        }
        assert!(!is_slack_user_id("Ualice"));
        assert_eq!(code("a`b"), "`a'b`");
        for (url, link) in [
            ("javascript:alert(1)", None),
            ("https://x/y|z", None),
            (
                "https://example.com/r",
                Some("<https://example.com/r|release notes>"),
            ),
        ] {
            assert_eq!(release_notes(url).as_deref(), link, "release notes {url}");
        }
    }
}
