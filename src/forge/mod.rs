//! The forge: where deployments, their statuses and their logs are kept. Today that is GitHub
//! ([`github`]); the types here are what the rest of zbot speaks, so no other module names octocrab.

pub mod github;

/// A deployment status as GitHub knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    /// Created, not yet seen by the deployer (zbot publishes this itself; GitHub's own is `pending`).
    Pending,
    Queued,
    InProgress,
    Success,
    Failure,
    Error,
}

impl StatusState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StatusState::Success | StatusState::Failure | StatusState::Error
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Pending => "pending",
            StatusState::Queued => "queued",
            StatusState::InProgress => "in_progress",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error => "error",
        }
    }
}

/// One status to post on a deployment.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub state: StatusState,
    /// Cut to GitHub's 140 characters by the forge.
    pub description: String,
    pub log_url: Option<String>,
    pub environment_url: Option<String>,
}

/// A published log (a gist): its id to update it, and the page people open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    pub id: String,
    pub url: String,
}

/// GitHub's limit on a status description.
pub const MAX_DESCRIPTION: usize = 140;

/// `text` cut to at most `max` characters, ending with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
