//! The mutating webhook's side of the wire format, beside `validating`: a review's request
//! becomes the core's plain [`Submission`], and the core's [`Mutation`] becomes the decision
//! sent back. The core (`mutate`) never sees the review.

use crate::admission::{Decision, Operation, Request};
use crate::mutate::identity::Submission;
use crate::mutate::Mutation;

/// `authentication.kubernetes.io/pod-name`: bound tokens name the pod that holds them.
const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";

/// What the core needs of a review: who submitted which object, where.
pub fn submission(request: &Request) -> Submission<'_> {
    Submission {
        creates_a_pod: request.operation == Operation::Create
            && request.kind.kind == "Pod"
            && request.kind.group.is_empty(),
        namespace: &request.namespace,
        name: &request.name,
        username: &request.user_info.username,
        token_pod_name: request.user_info.extra_value(POD_NAME_EXTRA),
        pod: request.object.as_ref(),
    }
}

/// The admission decision for a mutation: always allowed, with the patch when there is one.
pub fn decision(mutation: Mutation) -> Decision {
    match mutation {
        Mutation::Unchanged { warnings } | Mutation::Dropped { warnings } => Decision::allow_with_warnings(warnings),
        Mutation::Patch { patch, applied, warnings } => Decision {
            allowed: true,
            denial: None,
            warnings,
            patch: Some(patch),
            applied: applied.iter().map(|setting| setting.as_str()).collect(),
            config: String::new(),
        },
    }
}
