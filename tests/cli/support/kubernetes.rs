//! What a Kubernetes cluster gives the pods of docs/kubernetes.md that `podman kube play` cannot:
//! service-account tokens and the API server's TokenReview endpoint, for OpenBao's kubernetes
//! auth method (tests/cli/deploy.rs).
//!
//! - [`ServiceAccounts::token_dir`]: a directory laid out like the one kubelet mounts at
//!   `/var/run/secrets/kubernetes.io/serviceaccount` (`token`, `namespace`), holding a JWT shaped
//!   like a bound service-account token (`sub`, `kubernetes.io` claims). Its signature is
//!   random: OpenBao does not check it but asks the API server, as it does in a cluster.
//! - [`ServiceAccounts`] is also that API server: `POST
//!   /apis/authentication.k8s.io/v1/tokenreviews` answers `authenticated: true` with the service
//!   account's user name and UID for a token it issued, and `authenticated: false` for any
//!   other. OpenBao is configured to call it (`kubernetes_host`).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{json, Value};

use super::openbao::{Action, Seen, StandIn};
use super::sentinel;

struct Issued {
    token: String,
    namespace: String,
    name: String,
    uid: String,
}

pub struct ServiceAccounts {
    standin: StandIn,
    issued: Arc<Mutex<Vec<Issued>>>,
    dir: tempfile::TempDir,
}

impl ServiceAccounts {
    pub fn start() -> ServiceAccounts {
        let issued: Arc<Mutex<Vec<Issued>>> = Arc::default();
        let known = Arc::clone(&issued);
        let standin = StandIn::start(move |request, _| review(request, &known));
        let dir = tempfile::Builder::new()
            .prefix("cme-exec-serviceaccounts-")
            .tempdir()
            .expect("a directory for service-account tokens");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        ServiceAccounts {
            standin,
            issued,
            dir,
        }
    }

    /// `http://127.0.0.1:PORT`: the API server address OpenBao is given.
    pub fn url(&self) -> String {
        self.standin.url()
    }

    /// A token for `namespace/name`, issued once per account, in a directory like kubelet's
    /// mount (`token` readable by any user of the pod, as kubelet makes it).
    pub fn token_dir(&self, namespace: &str, name: &str) -> PathBuf {
        let dir = self.dir.path().join(format!("{namespace}.{name}"));
        if dir.is_dir() {
            return dir;
        }
        let uid = format!(
            "{}-4c1b-4a3e-9e1d-{}",
            &super::secrets::random_hex()[..8],
            &super::secrets::random_hex()[..12]
        );
        let token = jwt(namespace, name, &uid);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        for (file, text) in [("token", token.as_str()), ("namespace", namespace)] {
            let path = dir.join(file);
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        }
        self.issued.lock().unwrap().push(Issued {
            token,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid,
        });
        dir
    }

    /// The token of `namespace/name` (issued by [`Self::token_dir`]).
    pub fn token(&self, namespace: &str, name: &str) -> String {
        fs::read_to_string(self.token_dir(namespace, name).join("token")).unwrap()
    }

    /// The accounts the API server was asked about (`namespace/name`, or `unknown` for a token
    /// it never issued), in order.
    pub fn reviewed(&self) -> Vec<String> {
        let issued = self.issued.lock().unwrap();
        self.standin
            .requests()
            .iter()
            .map(|r| {
                let token = r.json()["spec"]["token"].as_str().unwrap_or("").to_owned();
                issued
                    .iter()
                    .find(|i| i.token == token)
                    .map_or("unknown".to_owned(), |i| {
                        format!("{}/{}", i.namespace, i.name)
                    })
            })
            .collect()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A JWT shaped like a bound service-account token; the signature is random bytes. A sentinel
/// in `jti` makes the token itself findable by the leak checks.
fn jwt(namespace: &str, name: &str, uid: &str) -> String {
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({ "alg": "RS256", "kid": "cme-exec-tests" });
    let claims = json!({
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "exp": now + 3600,
        "iat": now,
        "nbf": now,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "jti": sentinel(&format!("sa-token-{name}").replace(|c: char| !c.is_ascii_alphanumeric(), "-")),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": { "name": name, "uid": uid },
        },
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
    });
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(super::secrets::random_hex().repeat(16).as_bytes());
    format!("{}.{}.{signature}", b64(&header), b64(&claims))
}

fn review(request: &Seen, issued: &Mutex<Vec<Issued>>) -> Action {
    if request.method != "POST" || request.path() != "/apis/authentication.k8s.io/v1/tokenreviews" {
        return Action::json(
            404,
            json!({ "kind": "Status", "status": "Failure", "code": 404 }),
        );
    }
    let spec = request.json()["spec"].clone();
    let token = spec["token"].as_str().unwrap_or("");
    let issued = issued.lock().unwrap();
    let status = match issued.iter().find(|i| i.token == token) {
        Some(i) => json!({
            "authenticated": true,
            "user": {
                "username": format!("system:serviceaccount:{}:{}", i.namespace, i.name),
                "uid": i.uid,
                "groups": [
                    "system:serviceaccounts",
                    format!("system:serviceaccounts:{}", i.namespace),
                    "system:authenticated",
                ],
            },
            "audiences": spec["audiences"].as_array().cloned().unwrap_or_else(|| {
                vec![json!("https://kubernetes.default.svc.cluster.local")]
            }),
        }),
        None => json!({ "authenticated": false, "error": "invalid bearer token" }),
    };
    Action::json(
        201,
        json!({
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": { "creationTimestamp": null },
            "spec": spec,
            "status": status,
        }),
    )
}
