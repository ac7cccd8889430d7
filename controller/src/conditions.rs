//! Conditions (`Ready`, `Failed`) on the status of every kind: setting one, reading one.

use crate::crd::Condition;

pub const READY: &str = "Ready";
pub const FAILED: &str = "Failed";

/// Sets condition `type_` and says whether its status or reason changed (a transition worth an
/// event). `lastTransitionTime` moves only when the status changes, as in Kubernetes.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
) -> bool {
    let status = if status { "True" } else { "False" };
    let now = now_rfc3339();
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        let changed = c.status != status || c.reason.as_deref() != Some(reason);
        if c.status != status {
            c.last_transition_time = Some(now);
        }
        c.status = status.to_owned();
        c.reason = Some(reason.to_owned());
        c.message = Some(message.to_owned());
        return changed;
    }
    conditions.push(Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_transition_time: Some(now),
    });
    true
}

/// Sets a condition of a resource whose status has `lastConditionState` (what `kubectl get`
/// shows): `Ready` when ready, else the reason of the last condition set; a transition of
/// `Ready`, or a `Failed` that became true, is queued as an event (a warning unless ready).
pub fn record(
    conditions: &mut Vec<Condition>,
    last_state: &mut Option<String>,
    events: &mut Vec<crate::object::PendingEvent>,
    (type_, ok): (&str, bool),
    reason: &str,
    message: &str,
) {
    let changed = set(conditions, type_, ok, reason, message);
    if type_ == READY || (type_ == FAILED && ok) {
        *last_state = Some(
            if ok && type_ == READY {
                "Ready"
            } else {
                reason
            }
            .to_owned(),
        );
    }
    if changed && (type_ == READY || ok) {
        events.push((
            !ok || type_ == FAILED,
            reason.to_owned(),
            message.to_owned(),
        ));
    }
}

/// Drops condition `type_` (a `Failed` that no longer holds).
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// Whether condition `type_` is there with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// The RFC 3339 time of now, in the form Kubernetes writes (seconds, `Z`).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transition_is_a_change_of_status_or_reason() {
        let mut c = Vec::new();
        assert!(set(&mut c, READY, false, "Provisioning", "m"));
        assert!(!set(&mut c, READY, false, "Provisioning", "other message"));
        assert!(set(&mut c, READY, false, "ProvisionCallFailed", "m"));
        assert!(set(&mut c, READY, true, "ProvisionedSuccessfully", "m"));
        assert!(is_true(&c, READY));
        assert_eq!(c.len(), 1);
        remove(&mut c, READY);
        assert!(c.is_empty());
    }
}
