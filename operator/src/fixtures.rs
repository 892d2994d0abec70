//! A mock Kubernetes API server for fast reconciler unit tests: a [`kube::Client`] over a
//! tower service that records every request the reconciler makes and answers it from an
//! in-memory object store, so a test can assert what was written without a real API server.
//!
//! What it is not: an API server. It keeps no resource versions, runs no admission and no
//! defaulting, and understands only what a reconcile sends: GET, POST (echoed back as
//! created), merge and apply PATCHes (merged into the stored object, or stored as the object
//! when there is none) and JSON PATCHes (recorded; the object is returned unchanged). Anything
//! it does not hold is a 404. The integration tests (`operator/tests/e2e.rs`) run the same
//! decisions against the real kube-apiserver; these run in milliseconds with no environment.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::Value;

mod reconciles;

/// One request the reconciler made.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The HTTP method.
    pub(crate) method: Method,
    /// The request path, without the query.
    pub(crate) path: String,
    /// The request's `Content-Type` (which kind of PATCH it is).
    pub(crate) content_type: String,
    /// The body, as JSON (`Null` when there is none).
    pub(crate) body: Value,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    /// Objects by their path (`/apis/GROUP/VERSION/namespaces/NS/PLURAL/NAME`).
    objects: BTreeMap<String, Value>,
}

/// The mock API server behind a [`kube::Client`]; clones share one state.
#[derive(Clone, Default)]
pub(crate) struct ApiServer {
    state: Arc<Mutex<State>>,
}

impl ApiServer {
    /// A new, empty server and a client of it (default namespace `default`).
    pub(crate) fn start() -> (kube::Client, Self) {
        let server = Self::default();
        let serving = server.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let server = serving.clone();
            async move { Ok::<_, std::convert::Infallible>(server.answer(request).await) }
        });
        (kube::Client::new(service, "default"), server)
    }

    /// Stores `object` (anything with `apiVersion`, `kind` and namespaced metadata) where the
    /// client will look for it.
    pub(crate) fn insert(&self, object: &impl serde::Serialize) {
        let object = serde_json::to_value(object).expect("a test object serializes");
        let path = object_path(&object).expect("a test object has apiVersion, kind and metadata");
        self.lock().objects.insert(path, object);
    }

    /// Every request made so far, oldest first.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The requests of `method` to `path` (which may end in `/status`), oldest first.
    pub(crate) fn calls_to(&self, method: &Method, path: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == *method && c.path == path)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn answer(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let call = Call {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            body: body.clone(),
        };
        let mut state = self.lock();
        state.calls.push(call.clone());
        let key = call
            .path
            .strip_suffix("/status")
            .unwrap_or(&call.path)
            .to_owned();
        let answer = match call.method {
            Method::GET => state.objects.get(&key).cloned(),
            Method::POST => Some(body),
            Method::PATCH if call.content_type.contains("json-patch") => {
                state.objects.get(&key).cloned()
            }
            Method::PATCH => {
                let stored = state.objects.entry(key).or_insert(Value::Null);
                merge(stored, &body);
                Some(stored.clone())
            }
            _ => None,
        };
        match answer {
            Some(object) => respond(StatusCode::OK, &object),
            None => respond(
                StatusCode::NOT_FOUND,
                &serde_json::json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "reason": "NotFound", "code": 404,
                    "message": format!("{} not found", call.path),
                }),
            ),
        }
    }
}

fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string().into_bytes()))
        .expect("a valid response")
}

/// Where the client finds a namespaced object.
fn object_path(object: &Value) -> Option<String> {
    let api_version = object["apiVersion"].as_str()?;
    let kind = object["kind"].as_str()?.to_lowercase();
    let namespace = object["metadata"]["namespace"].as_str()?;
    let name = object["metadata"]["name"].as_str()?;
    let group = if api_version.contains('/') {
        "apis"
    } else {
        "api"
    };
    Some(format!(
        "/{group}/{api_version}/namespaces/{namespace}/{kind}s/{name}"
    ))
}

/// A JSON merge patch (RFC 7386) of `patch` into `target`.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(into) = target {
        for (key, value) in fields {
            if value.is_null() {
                into.remove(key);
            } else {
                merge(into.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_patch_replaces_adds_and_removes() {
        let mut target = serde_json::json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge(
            &mut target,
            &serde_json::json!({"a": 5, "b": {"c": null, "f": 4}, "e": [2]}),
        );
        assert_eq!(
            target,
            serde_json::json!({"a": 5, "b": {"d": 3, "f": 4}, "e": [2]})
        );
    }

    #[test]
    fn objects_are_found_where_the_client_looks() {
        let job = serde_json::json!({"apiVersion": "kubecrawl.io/v1alpha1", "kind": "CrawlJob",
            "metadata": {"name": "j", "namespace": "ns"}});
        assert_eq!(
            object_path(&job).as_deref(),
            Some("/apis/kubecrawl.io/v1alpha1/namespaces/ns/crawljobs/j")
        );
    }
}
