//! The bearer-key middleware in front of every `/v1` route: `Authorization: Bearer <token>` is
//! checked by the vault on every call (so a revoked key is refused on its next request), and the
//! [`Caller`] it stands for is left in the request's extensions for the handlers. Every failure
//! is the same 401 without detail, so a probe learns nothing about which keys exist.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use custodia_core::ApiKeyId;
use custodia_vault::Caller;

use crate::ServerState;
use crate::error::{ApiError, blocking};

/// The key a request was made with, left on the response for the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerKey(pub ApiKeyId);

/// The token of an `Authorization: Bearer <token>` header, if there is one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Authenticates the request or answers 401.
pub async fn require_key(
    State(state): State<ServerState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer(req.headers()) else {
        return ApiError::AuthMissing.into_response();
    };
    // A cached key is checked in memory; only an unknown one costs a trip to the blocking pool
    // (with a copy of the token, as the request goes on without waiting for it).
    let answer = match state.vault().try_authenticate_cached(token) {
        Some(answer) => answer.map_err(ApiError::from),
        None => {
            let token = token.to_owned();
            let vault = state.vault().clone();
            blocking(move || Ok(vault.authenticate(&token)?)).await
        }
    };
    let caller: Caller = match answer {
        Ok(caller) => caller,
        Err(err) => return err.into_response(),
    };
    let key = caller.key;
    req.extensions_mut().insert(caller);
    let mut response = next.run(req).await;
    if let Some(key) = key {
        response.extensions_mut().insert(CallerKey(key));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(value) {
            map.insert(header::AUTHORIZATION, value);
        }
        map
    }

    #[test]
    fn reads_only_bearer_tokens() {
        assert_eq!(bearer(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&headers("Basic abc")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
