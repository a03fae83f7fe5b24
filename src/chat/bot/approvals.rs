//! Deploys that wait for approval: the request (posted in the thread with Approve and Reject buttons),
//! `approve #<n>` and `reject #<n> [<reason>]` in text or by a click, and expiry. Nothing exists on
//! GitHub until a request is approved; then zbot creates the deployment, with a grant naming the
//! request, so the runner can check the approval is for that very commit.

use chrono::{DateTime, Utc};

use super::{Bot, Thread};
use crate::chat::{ChatOutput, Inbound, InboundKind, Message};
use crate::command::DeployCommand;
use crate::domain::{DeploymentId, GitRef, Sha};
use crate::policy::{self, Denial, Target};
use crate::reply;
use crate::store::{ApprovalRequest, NewRequest, RequestState};

impl<O: ChatOutput> Bot<O> {
    /// Posts a request for approval of this deploy in `thread`, with buttons; nothing is created on
    /// GitHub yet. The ref is resolved now (unless `pinned` names the commit, as a rollback's does):
    /// the approval is for that commit, and that commit is what is deployed once approved.
    pub(super) async fn request_approval(
        &self,
        target: &Target<'_>,
        git_ref: &GitRef,
        pinned: Option<&Sha>,
        command: &DeployCommand,
        inbound: &Inbound,
        thread: &Thread,
    ) -> String {
        let Some(settings) = target.app.approvals.get(&target.environment) else {
            return String::new();
        };
        let resolved = match pinned {
            Some(sha) => Ok(sha.clone()),
            None => {
                self.forge
                    .resolve(&target.app_name, target.app, git_ref)
                    .await
            }
        };
        let sha = match resolved {
            Ok(sha) => sha,
            Err(refusal) => {
                return reply::refused(
                    &refusal,
                    target.app_name.as_str(),
                    target.app.repository.as_str(),
                );
            }
        };
        let now = self.clock.now();
        let request = NewRequest {
            app: target.app_name.clone(),
            environment: target.environment.clone(),
            git_ref: git_ref.clone(),
            sha,
            task: command.task.clone(),
            hosts: command.hosts.clone(),
            force: command.force,
            requester: inbound.user.clone(),
            channel: thread.channel.clone(),
            thread_ts: thread.ts.clone(),
            needed: settings.count,
            created_at: now,
            expires_at: now
                + chrono::Duration::from_std(settings.timeout)
                    .unwrap_or(chrono::Duration::hours(2)),
        };
        let stored = match self.store.create_request(&request).await {
            Ok(id) => ApprovalRequest {
                id,
                request,
                message_ts: None,
                state: RequestState::Waiting,
                decided_by: None,
                decided_at: None,
                reason: None,
                deployment_id: None,
            },
            Err(e) => {
                tracing::error!("cannot record a deploy request: {e}");
                return reply::store_unavailable();
            }
        };
        // No approvers listed: those allowed to deploy there, where deploys are limited.
        let approvers = match target.app.allowed_users.get(&target.environment) {
            Some(allowed) if settings.approvers.is_empty() => allowed,
            _ => &settings.approvers,
        };
        let message = reply::approval_request(&stored, approvers, self.config.bot.time_zone);
        match self
            .out
            .post(&thread.channel, Some(&thread.ts), &message)
            .await
        {
            Ok(ts) => {
                if let Err(e) = self.store.set_request_message(stored.id, &ts).await {
                    tracing::error!("cannot record a request's message: {e}");
                }
            }
            Err(e) => {
                tracing::error!(channel = %thread.channel, "cannot post a deploy request: {e}")
            }
        }
        String::new()
    }

    pub(super) async fn approve(
        &self,
        request: u64,
        inbound: &Inbound,
        thread: &Thread,
    ) -> Result<String, Denial> {
        self.decide(request, &inbound.user, None, true, thread)
            .await
    }

    pub(super) async fn reject(
        &self,
        request: u64,
        reason: Option<&str>,
        inbound: &Inbound,
        thread: &Thread,
    ) -> Result<String, Denial> {
        self.decide(request, &inbound.user, reason, false, thread)
            .await
    }

    /// A click on a request's Approve or Reject button (Socket Mode `interactive`, `block_actions`):
    /// decided as the text command, answered in the request's thread. Reject first asks for a reason
    /// in a modal (with `trigger_id`), where the chat service has them.
    pub async fn clicked(
        &self,
        user: &str,
        action_id: &str,
        value: &str,
        trigger_id: Option<&str>,
    ) {
        let approve = match action_id {
            reply::APPROVE_ACTION => true,
            reply::REJECT_ACTION => false,
            _ => return,
        };
        let Ok(id) = value.parse::<u64>() else {
            return;
        };
        if !approve
            && let Some(trigger_id) = trigger_id
            && let Ok(number) = i64::try_from(id)
            && self.out.ask_reject_reason(trigger_id, number).await
        {
            return;
        }
        self.decide_in_thread(user, id, None, approve).await;
    }

    /// The reject modal submitted: the rejection, with its reason, in the request's thread.
    pub async fn rejected_with_reason(&self, user: &str, request: &str, reason: Option<&str>) {
        let Ok(id) = request.parse::<u64>() else {
            return;
        };
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        self.decide_in_thread(user, id, reason, false).await;
    }

    /// Decides request `id` for `user`, answering in the request's own thread.
    async fn decide_in_thread(&self, user: &str, id: u64, reason: Option<&str>, approve: bool) {
        let Ok(Some(request)) = self
            .store
            .request(i64::try_from(id).unwrap_or(i64::MAX))
            .await
        else {
            return;
        };
        let thread = Thread {
            channel: request.request.channel.clone(),
            ts: request.request.thread_ts.clone(),
        };
        let answer = match self.decide(id, user, reason, approve, &thread).await {
            Ok(text) => text,
            Err(denial) => format!("{} {}", reply::user(user), reply::denial(&denial)),
        };
        if !answer.is_empty() {
            self.say(&thread, &answer).await;
        }
    }

    /// Approves or rejects request `id` for `user`; the answer is for `thread` (the command's). A
    /// decision is also said in the request's own thread when that is another.
    async fn decide(
        &self,
        id: u64,
        user: &str,
        reason: Option<&str>,
        approve: bool,
        thread: &Thread,
    ) -> Result<String, Denial> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(reply::no_such_request(id));
        };
        let request = match self.store.request(id).await {
            Ok(Some(request)) => request,
            Ok(None) => {
                // `#N` names deployments too: say which it is.
                let deployment = self.store.get(DeploymentId(id.unsigned_abs())).await;
                return Ok(match deployment {
                    Ok(Some(_)) => reply::deployment_not_request(id.unsigned_abs()),
                    _ => reply::no_such_request(id.unsigned_abs()),
                });
            }
            Err(e) => {
                tracing::error!("cannot read a deploy request: {e}");
                return Ok(reply::store_unavailable());
            }
        };
        let Some((app_name, app)) = self.config.app(request.request.app.as_str()) else {
            return Ok(reply::no_such_request(id.unsigned_abs()));
        };
        let Some(settings) = app.approvals.get(&request.request.environment) else {
            return Ok(reply::no_such_request(id.unsigned_abs()));
        };
        let now = self.clock.now();
        let members = self.out.group_members(&settings.approvers).await;
        let allowed = app
            .allowed_users
            .get(&request.request.environment)
            .map(Vec::as_slice);
        policy::approvals::may_decide(&request, settings, allowed, user, &members, approve, now)?;
        let own_thread = Thread {
            channel: request.request.channel.clone(),
            ts: request.request.thread_ts.clone(),
        };
        let elsewhere = own_thread.channel != thread.channel || own_thread.ts != thread.ts;
        if !approve {
            match self
                .store
                .decide_request(id, RequestState::Rejected, Some(user), reason, now)
                .await
            {
                Ok(true) => {}
                Ok(false) => return Err(self.decided_since(&request).await),
                Err(e) => {
                    tracing::error!("cannot record a rejection: {e}");
                    return Ok(reply::store_unavailable());
                }
            }
            let text = reply::rejected(&request, user, reason);
            self.end_request_message(&request, &reply::request_rejected_by(user, reason))
                .await;
            if elsewhere {
                self.say(&own_thread, &text).await;
            }
            return Ok(text);
        }
        // Closed since it was asked for (a freeze, the window, freezes that cannot be read) or locked
        // by someone else: the approval is not taken, and the request stays open until it expires;
        // approving it again once deploys open deploys it. Checked as the runner will check the
        // deployment, with the requester as its actor, so no GitHub deployment is made to be refused.
        let target = Target {
            app_name: app_name.clone(),
            app,
            environment: request.request.environment.clone(),
        };
        let requester = Inbound {
            kind: InboundKind::Mention,
            channel: own_thread.channel.clone(),
            channel_name: None,
            user: request.request.requester.clone(),
            user_name: None,
            team_id: None,
            text: String::new(),
            ts: None,
            thread_ts: Some(own_thread.ts.clone()),
        };
        let open = match self
            .closure_check(&target, request.request.force, &requester)
            .await
        {
            Ok(_) => self.lock_check(&target, &requester.user).await,
            Err(denial) => Err(denial),
        };
        if let Err(denial) = open {
            return Ok(reply::approval_not_taken(
                &request,
                &denial,
                self.config.bot.time_zone,
                now,
            ));
        }
        // The same person twice is one approval: said, not counted again.
        if let Ok(given) = self.store.approvers_of(id, &request.request.sha).await
            && given.iter().any(|(approver, _)| approver == user)
        {
            return Ok(reply::already_approved(&request, given.len()));
        }
        let approvers = match self
            .store
            .approve_request(id, user, &request.request.sha, now)
            .await
        {
            Ok(approvers) => approvers,
            Err(e) => {
                tracing::error!("cannot record an approval: {e}");
                return Ok(reply::store_unavailable());
            }
        };
        if approvers.len() < request.request.needed as usize {
            let text = reply::approval_counted(&request, &approvers);
            if elsewhere {
                self.say(&own_thread, &text).await;
            }
            return Ok(text);
        }
        match self
            .store
            .decide_request(id, RequestState::Approved, Some(user), None, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(self.decided_since(&request).await),
            Err(e) => {
                tracing::error!("cannot record an approval: {e}");
                return Ok(reply::store_unavailable());
            }
        }
        let text = reply::approved(&request, &approvers);
        self.end_request_message(&request, &reply::request_approved_by(&approvers))
            .await;
        self.say(&own_thread, &text).await;
        // The deployment, as the requester asked for it, in the request's thread.
        let overrides = request.request.force
            && self
                .config
                .bot
                .admins
                .iter()
                .any(|a| a == &request.request.requester);
        let answer = self
            .create(
                &target,
                &request.request.git_ref,
                Some(&request.request.sha),
                &request.request.task,
                request.request.force,
                request.request.hosts.as_ref(),
                overrides,
                Some(id),
                &requester,
                &own_thread,
            )
            .await;
        if !answer.is_empty() {
            self.say(&own_thread, &answer).await;
        }
        Ok(if elsewhere { text } else { String::new() })
    }

    /// A request someone else decided (or that expired) between reading it and deciding it: its state
    /// now, as a denial that says it.
    async fn decided_since(&self, request: &ApprovalRequest) -> Denial {
        match self.store.request(request.id).await {
            Ok(Some(now)) => Denial::RequestDecided(Box::new(now)),
            _ => Denial::RequestDecided(Box::new(request.clone())),
        }
    }

    /// Replaces the request's message (its buttons go) with how it ended.
    async fn end_request_message(&self, request: &ApprovalRequest, how: &str) {
        let Some(ts) = &request.message_ts else {
            return;
        };
        let message: Message = reply::approval_request_ended(request, how);
        if let Err(e) = self
            .out
            .update(&request.request.channel, ts, &message)
            .await
        {
            tracing::warn!("cannot update a deploy request's message: {e}");
        }
    }

    /// Ends the requests whose time ran out, saying so in their threads.
    pub(super) async fn expire_requests(&self, now: DateTime<Utc>) {
        let expired = match self.store.expire_requests(now).await {
            Ok(expired) => expired,
            Err(e) => {
                tracing::error!("cannot expire deploy requests: {e}");
                return;
            }
        };
        for request in expired {
            let text = reply::request_expired(&request);
            self.end_request_message(&request, "expired without approval")
                .await;
            let thread = Thread {
                channel: request.request.channel.clone(),
                ts: request.request.thread_ts.clone(),
            };
            self.say(&thread, &text).await;
        }
    }
}
