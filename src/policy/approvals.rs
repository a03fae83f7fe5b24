//! Who may approve or reject a deploy that waits for approval, and whether a deployment carries the
//! approval its environment needs. Pure: the request, the settings and "now" are given.

use chrono::{DateTime, Utc};

use super::Denial;
use crate::config::Approvals;
use crate::domain::Sha;
use crate::store::{ApprovalRequest, RequestState};

/// Whether `user` may decide `request` at `now`. The approvers are `settings.approvers` (Slack user
/// ids, or user groups whose members zbot asked Slack for: `members`); none listed means anyone
/// allowed to deploy there (`allowed`: the environment's `allowed_users`, when set) — never anyone at
/// all where deploys are limited to some people. The requester cannot approve their own deploy, but
/// may withdraw it (reject).
pub fn may_decide(
    request: &ApprovalRequest,
    settings: &Approvals,
    allowed: Option<&[String]>,
    user: &str,
    members: &[String],
    approve: bool,
    now: DateTime<Utc>,
) -> Result<(), Denial> {
    if request.state != RequestState::Waiting {
        return Err(Denial::RequestDecided(Box::new(request.clone())));
    }
    if now >= request.request.expires_at {
        return Err(Denial::RequestExpired { id: request.id });
    }
    let own = request.request.requester == user;
    if own && approve {
        return Err(Denial::OwnRequest { id: request.id });
    }
    let listed = if settings.approvers.is_empty() {
        allowed.is_none_or(|allowed| allowed.iter().any(|a| a == user))
    } else {
        // A group is named by its handle (`@oncall`) or id (`S…`): its members count, never the name.
        let person = |a: &&String| !a.starts_with('@') && !a.starts_with('S');
        settings.approvers.iter().filter(person).any(|a| a == user)
            || members.iter().any(|m| m == user)
    };
    if !listed && !own {
        return Err(Denial::NotApprover {
            id: request.id,
            approvers: if settings.approvers.is_empty() {
                allowed.map(<[String]>::to_vec).unwrap_or_default()
            } else {
                settings.approvers.clone()
            },
        });
    }
    Ok(())
}

/// Whether a deployment of `sha` may run where approval is needed: only one zbot made for an approved
/// request of that very commit (a new sha needs a new approval).
pub fn approval_holds(request: Option<&ApprovalRequest>, sha: &Sha) -> Result<(), Denial> {
    match request {
        Some(r) if r.state == RequestState::Approved && &r.request.sha == sha => Ok(()),
        Some(r) if r.state == RequestState::Approved => Err(Denial::ApprovedAnotherSha {
            approved: r.request.sha.clone(),
        }),
        _ => Err(Denial::NeedsApproval),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::guards::tests::at;
    use crate::store::NewRequest;

    fn request(state: RequestState) -> ApprovalRequest {
        ApprovalRequest {
            id: 7,
            request: NewRequest {
                app: "adxstat".parse().unwrap(),
                environment: "production".parse().unwrap(),
                git_ref: "main".parse().unwrap(),
                sha: "a".repeat(40).parse().unwrap(),
                task: "deploy".parse().unwrap(),
                hosts: None,
                force: false,
                requester: "U0ALICE".into(),
                channel: "C0CHAN".into(),
                thread_ts: "1.2".into(),
                needed: 1,
                created_at: at("2026-11-30T09:00:00Z"),
                expires_at: at("2026-11-30T11:00:00Z"),
            },
            message_ts: None,
            state,
            decided_by: None,
            decided_at: None,
            reason: None,
            deployment_id: None,
        }
    }

    #[test]
    fn who_may_decide() {
        let anyone = Approvals {
            count: 1,
            approvers: vec![],
            timeout: Duration::from_secs(7200),
        };
        let listed = Approvals {
            approvers: vec!["U0BOB".into(), "@oncall".into()],
            ..anyone.clone()
        };
        let now = at("2026-11-30T10:00:00Z");
        let waiting = request(RequestState::Waiting);
        let oncall = vec!["U0CAROL".to_string()];
        let deployers = ["U0ALICE".to_string(), "U0BOB".to_string()];
        let none: Option<&[String]> = None;
        for (settings, allowed, user, members, approve, ok) in [
            (&anyone, none, "U0BOB", &vec![], true, true),
            (&anyone, none, "U0ALICE", &vec![], true, false),
            (&anyone, none, "U0ALICE", &vec![], false, true),
            // No approvers listed where deploys are limited: those allowed to deploy, only.
            (&anyone, Some(&deployers[..]), "U0BOB", &vec![], true, true),
            (&anyone, Some(&deployers[..]), "U0EVE", &vec![], true, false),
            (
                &anyone,
                Some(&deployers[..]),
                "U0EVE",
                &vec![],
                false,
                false,
            ),
            (
                &anyone,
                Some(&deployers[..]),
                "U0ALICE",
                &vec![],
                true,
                false,
            ),
            (&listed, none, "U0BOB", &vec![], true, true),
            (&listed, none, "U0DAVE", &vec![], true, false),
            (&listed, none, "U0CAROL", &oncall, true, true),
            // A group's handle is not a member: only its members (asked of Slack) are.
            (&listed, none, "@oncall", &vec![], true, false),
            (
                &listed,
                Some(&deployers[..]),
                "U0CAROL",
                &oncall,
                true,
                true,
            ),
        ] {
            assert_eq!(
                may_decide(&waiting, settings, allowed, user, members, approve, now).is_ok(),
                ok,
                "{user} {approve} {allowed:?}"
            );
        }
        assert_eq!(
            may_decide(&waiting, &anyone, None, "U0ALICE", &[], true, now),
            Err(Denial::OwnRequest { id: 7 })
        );
        assert_eq!(
            may_decide(
                &waiting,
                &anyone,
                None,
                "U0BOB",
                &[],
                true,
                at("2026-11-30T11:00:00Z")
            ),
            Err(Denial::RequestExpired { id: 7 })
        );
        let approved = request(RequestState::Approved);
        assert!(may_decide(&approved, &anyone, None, "U0BOB", &[], true, now).is_err());
    }

    #[test]
    fn an_approval_holds_for_its_sha_only() {
        let approved = request(RequestState::Approved);
        let sha: Sha = "a".repeat(40).parse().unwrap();
        let other: Sha = "b".repeat(40).parse().unwrap();
        assert_eq!(approval_holds(Some(&approved), &sha), Ok(()));
        assert!(matches!(
            approval_holds(Some(&approved), &other),
            Err(Denial::ApprovedAnotherSha { .. })
        ));
        assert_eq!(approval_holds(None, &sha), Err(Denial::NeedsApproval));
        assert_eq!(
            approval_holds(Some(&request(RequestState::Waiting)), &sha),
            Err(Denial::NeedsApproval)
        );
    }
}
