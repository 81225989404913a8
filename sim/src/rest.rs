//! The REST side: the endpoint call handing out WebSocket URLs, tenant
//! tokens, `/bot/v3/info`, and the IM and CardKit routes (delegated to
//! `im` and `cardkit`).

use serde_json::{Value, json};

use crate::cardkit::{replace_card, replace_element, set_content, set_settings};
use crate::http::{Request, Response};
use crate::state::{App, Inner, State};
use crate::{Fault, Route, rand_hex, rand_u64};

pub(crate) fn rest(inner: &Inner, req: Request) -> Response {
    inner.lock().requests.push(req.clone());
    inner.changed.notify_all();
    let body = req.json();
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/callback/ws/endpoint") => {
            let (app_id, secret) = (s(&body, "AppID"), s(&body, "AppSecret"));
            let mut st = inner.lock();
            *st.endpoint_calls.entry(app_id.clone()).or_default() += 1;
            match st.apps.get(&app_id) {
                None => {
                    Response::json(200, json!({"code": 1000040346, "msg": "app_id is invalid"}))
                }
                Some(app) if app.secret != secret => Response::json(
                    200,
                    json!({"code": 1000040345, "msg": "app_id or app_secret is invalid"}),
                ),
                // Not a documented code: any non-zero code is a
                // configuration error to clients (shared/feishu-protocol.md §1.1).
                Some(app) if !app.console.long_connection => Response::json(
                    200,
                    json!({"code": 1000040347, "msg": "the app does not receive events through the long connection"}),
                ),
                Some(_) => {
                    let (ticket, access_key) = (rand_hex(32), rand_hex(32));
                    st.tickets.insert(ticket.clone(), app_id);
                    st.issued.extend([ticket.clone(), access_key.clone()]);
                    let url = format!(
                        "{}/ws/v2?fpid=493&aid=552564&device_id={}&access_key={access_key}&service_id=33554678&ticket={ticket}",
                        inner.ws_public,
                        rand_u64() % 10_000_000_000,
                    );
                    Response::json(
                        200,
                        json!({"code": 0, "msg": "", "data": {"URL": url, "ClientConfig": inner.client_config()}}),
                    )
                }
            }
        }
        ("POST", "/open-apis/auth/v3/tenant_access_token/internal") => {
            let (app_id, secret) = (s(&body, "app_id"), s(&body, "app_secret"));
            let mut st = inner.lock();
            match st.apps.get(&app_id) {
                Some(app) if app.secret == secret => {
                    let token = format!("t-{}", rand_hex(40));
                    st.tokens.insert(token.clone(), app_id);
                    st.issued.push(token.clone());
                    Response::json(
                        200,
                        json!({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": inner.opts.token_expire}),
                    )
                }
                _ => Response::json(200, json!({"code": 10014, "msg": "app secret invalid"})),
            }
        }
        ("GET", "/open-apis/bot/v3/info") => {
            let st = inner.lock();
            match bearer_app(&st, &req) {
                Some(app) => Response::json(
                    200,
                    json!({"code": 0, "msg": "ok", "bot": {"activate_status": 2, "app_name": app.bot_name,
                           "avatar_url": "", "ip_white_list": [], "open_id": app.bot_open_id}}),
                ),
                None => invalid_token(),
            }
        }
        ("GET", "/open-apis/application/v6/scopes") => {
            let st = inner.lock();
            match bearer_app(&st, &req) {
                Some(app) => Response::json(200, app.console.scopes_reply()),
                None => invalid_token(),
            }
        }
        ("GET", path) if path.starts_with("/open-apis/application/v6/applications/") => {
            let id = path.trim_start_matches("/open-apis/application/v6/applications/");
            let st = inner.lock();
            match (bearer_app_id(&st, &req), bearer_app(&st, &req)) {
                (Some(app_id), Some(app)) if id == app_id || id == "me" => {
                    Response::json(200, app.console.app_reply(&app_id))
                }
                (Some(_), Some(_)) => Response::json(
                    400,
                    json!({"code": 99991672, "msg": "no permission for another app"}),
                ),
                _ => invalid_token(),
            }
        }
        ("GET", path)
            if path.starts_with("/open-apis/im/v1/chats/")
                && path.ends_with("/members/is_in_chat") =>
        {
            let chat = path
                .trim_start_matches("/open-apis/im/v1/chats/")
                .trim_end_matches("/members/is_in_chat");
            let st = inner.lock();
            match bearer_app(&st, &req) {
                Some(app) => Response::json(200, app.console.in_chat_reply(chat)),
                None => invalid_token(),
            }
        }
        (method, path) if path.starts_with("/open-apis/im/v1/messages") => {
            let rest = path.trim_start_matches("/open-apis/im/v1/messages").trim_start_matches('/');
            let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
            let (route, id, sub) = match (method, segs.as_slice()) {
                ("POST", []) => (Route::Send, "", ""),
                ("POST", [id, "reply"]) => (Route::Reply, *id, ""),
                ("PATCH", [id]) => (Route::Update, *id, ""),
                ("POST", [id, "reactions"]) => (Route::AddReaction, *id, ""),
                ("DELETE", [id, "reactions", rid]) => (Route::DeleteReaction, *id, *rid),
                ("POST", [id, "push_follow_up"]) => (Route::FollowUp, *id, ""),
                _ => return Response::json(404, json!({"code": 404, "msg": "not found"})),
            };
            let mut st = inner.lock();
            let Some(app_id) = bearer_app_id(&st, &req) else { return invalid_token() };
            let mut delay = st.im.slow_apps.get(&app_id).copied().unwrap_or_default();
            match st.im.take_fault(route) {
                Some(Fault::Error { http, code, msg, reset }) => {
                    let mut r = Response::json(http, json!({"code": code, "msg": msg}));
                    if let Some(secs) = reset {
                        r.headers.push(("x-ogw-ratelimit-reset".into(), secs.to_string()));
                        r.headers.push(("x-ogw-ratelimit-limit".into(), "50".into()));
                    }
                    return r;
                }
                Some(Fault::Delay(d)) => delay = d,
                None => {}
            }
            let window = inner.opts.follow_up_window;
            let mut r = st.im.handle(&app_id, route, &req, id, sub, window);
            drop(st);
            inner.changed.notify_all();
            r.delay = delay;
            r
        }
        (method, path) if path.starts_with("/open-apis/cardkit/v1/cards") => {
            cardkit(inner, method, path, &body, &req)
        }
        _ => Response::json(404, json!({"code": 404, "msg": "not found"})),
    }
}

/// The CardKit routes: create, stream content, settings, replace.
fn cardkit(inner: &Inner, method: &str, path: &str, body: &Value, req: &Request) -> Response {
    let rest = path.trim_start_matches("/open-apis/cardkit/v1/cards").trim_start_matches('/');
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let route = match (method, segs.as_slice()) {
        ("POST", []) => Route::CardCreate,
        ("PUT", [_, "elements", _, "content"]) => Route::CardContent,
        ("PATCH", [_, "settings"]) => Route::CardSettings,
        ("PUT", [_] | [_, "elements", _]) => Route::CardReplace,
        _ => return Response::json(404, json!({"code": 404, "msg": "not found"})),
    };
    let mut st = inner.lock();
    let Some(app_id) = bearer_app_id(&st, req) else { return invalid_token() };
    let granted = st.apps.get(&app_id).is_some_and(|a| a.console.granted("cardkit:card:write"));
    if !granted {
        return Response::json(
            400,
            json!({"code": 99991672, "msg": format!("Access denied. One of the following scopes is required: [cardkit:card:write]. https://open.feishu.cn/app/{app_id}/auth?q=cardkit:card:write&op_from=openapi&token_type=tenant")}),
        );
    }
    let delay = st.im.slow_apps.get(&app_id).copied().unwrap_or_default();
    match st.im.take_fault(route) {
        Some(Fault::Error { http, code, msg, reset }) => {
            let mut r = Response::json(http, json!({"code": code, "msg": msg}));
            if let Some(secs) = reset {
                r.headers.push(("x-ogw-ratelimit-reset".into(), secs.to_string()));
            }
            return r;
        }
        Some(Fault::Delay(d)) => {
            drop(st);
            std::thread::sleep(d);
            st = inner.lock();
        }
        None => {}
    }
    let timeout = inner.opts.stream_timeout;
    let ck = &mut st.im.cards;
    let mut r = match (route, segs.as_slice()) {
        (Route::CardCreate, _) => ck.create(&app_id, body),
        (Route::CardContent, [card, _, el, _]) => {
            ck.operate(&app_id, card, "content", body, timeout, |c| set_content(c, el, body))
        }
        (Route::CardSettings, [card, _]) => {
            ck.operate(&app_id, card, "settings", body, timeout, |c| set_settings(c, body))
        }
        (Route::CardReplace, [card]) => {
            ck.operate(&app_id, card, "replace", body, timeout, |c| replace_card(c, body))
        }
        (Route::CardReplace, [card, _, el]) => {
            ck.operate(&app_id, card, "replace", body, timeout, |c| replace_element(c, el, body))
        }
        _ => Response::json(404, json!({"code": 404, "msg": "not found"})),
    };
    drop(st);
    inner.changed.notify_all();
    r.delay = delay;
    r
}

pub(crate) fn bearer_app_id(st: &State, req: &Request) -> Option<String> {
    let token = req.header("authorization")?.strip_prefix("Bearer ")?;
    st.tokens.get(token).cloned()
}

pub(crate) fn bearer_app<'a>(st: &'a State, req: &Request) -> Option<&'a App> {
    let token = req.header("authorization")?.strip_prefix("Bearer ")?;
    st.apps.get(st.tokens.get(token)?)
}

pub(crate) fn invalid_token() -> Response {
    Response::json(400, json!({"code": 99991663, "msg": "Invalid access token for authorization"}))
}

pub(crate) fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
}
