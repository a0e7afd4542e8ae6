//! A scripted browser for the login flow: keeps cookies (per host, as browsers
//! do: ports share cookies), follows redirects one by one, and fills in the
//! test IdP's login form.

use std::collections::BTreeMap;

use reqwest::header::{HeaderMap, HeaderValue, COOKIE, LOCATION, SET_COOKIE};

/// Cookies of one host (everything here is 127.0.0.1), by name.
#[derive(Debug, Clone, Default)]
pub struct Browser {
    pub jar: BTreeMap<String, String>,
    pub user_agent: String,
}

/// One answer, with what a test wants to look at.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            jar: BTreeMap::new(),
            user_agent: "gatehouse-test-browser/1".into(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, h: &HeaderMap) -> Vec<String> {
        let mut seen = vec![];
        for v in h.get_all(SET_COOKIE) {
            let s = v.to_str().unwrap().to_string();
            let first = s.split(';').next().unwrap();
            let (name, value) = first.split_once('=').unwrap();
            let expired = s
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"))
                || value.is_empty();
            if expired {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_string(), value.to_string());
            }
            seen.push(s);
        }
        seen
    }

    pub async fn request(
        &mut self,
        method: reqwest::Method,
        url: &str,
        form: Option<&[(&str, &str)]>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut req = super::client()
            .request(method, url)
            .header("User-Agent", &self.user_agent)
            .header("Accept", "text/html");
        if !self.jar.is_empty() {
            req = req.header(
                COOKIE,
                HeaderValue::from_str(&self.cookie_header()).unwrap(),
            );
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if let Some(f) = form {
            req = req.form(f);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        let set_cookies = self.absorb(resp.headers());
        let body = resp.text().await.unwrap_or_default();
        Answer {
            status,
            location,
            set_cookies,
            body,
        }
    }

    pub async fn get(&mut self, url: &str) -> Answer {
        self.request(reqwest::Method::GET, url, None, &[]).await
    }

    /// Follows redirects from `url` while they stay on 127.0.0.1, logging in at
    /// the IdP's form on the way (`otp` adds the second factor). Returns the
    /// last answer: the redirect that leaves 127.0.0.1, or a non-redirect.
    pub async fn walk(&mut self, url: &str, login: Option<(&str, &str, Option<&str>)>) -> Answer {
        self.walk_until(url, login, |_| false).await
    }

    /// Like [`walk`](Self::walk), but stops before requesting a URL for which
    /// `stop` is true; that URL is then the answer's `location`.
    pub async fn walk_until(
        &mut self,
        url: &str,
        login: Option<(&str, &str, Option<&str>)>,
        stop: impl Fn(&str) -> bool,
    ) -> Answer {
        let mut url = url.to_string();
        for _ in 0..20 {
            let mut a = self.get(&url).await;
            if a.status == 200 && url.contains("/interaction/") {
                let (user, pw, otp) = login.expect("the IdP asks for a login");
                let form = [
                    ("login", user),
                    ("password", pw),
                    ("otp", otp.unwrap_or("")),
                ];
                a = self
                    .request(reqwest::Method::POST, &url, Some(&form), &[])
                    .await;
            }
            match a.location.clone() {
                Some(next) if (300..400).contains(&a.status) => {
                    let next = if next.starts_with('/') {
                        let base = url::Url::parse(&url).unwrap();
                        base.join(&next).unwrap().to_string()
                    } else {
                        next
                    };
                    if !next.starts_with("http://127.0.0.1") {
                        return a;
                    }
                    if stop(&next) {
                        return Answer {
                            location: Some(next),
                            ..a
                        };
                    }
                    url = next;
                }
                _ => return a,
            }
        }
        panic!("more than 20 redirects");
    }

    pub fn get_cookie(&self, name: &str) -> Option<String> {
        self.jar.get(name).cloned()
    }
}
