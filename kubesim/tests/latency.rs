//! Latency profiles and APF-like rate limits over real HTTP: fixed delays are paid per request,
//! `none` adds nothing, watch events arrive late, and per-client token buckets answer 429.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kubesim::{KubeSim, LatencyProfile, SimConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer, read whole from a `Connection: close` request.
struct Resp {
    code: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

fn request_text(method: &str, path: &str, token: &str, body: Option<&str>, close: bool) -> String {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: kubesim\r\nUser-Agent: latency-test\r\nAuthorization: Bearer {token}\r\n"
    );
    if close {
        req.push_str("Connection: close\r\n");
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    req
}

async fn call(addr: SocketAddr, method: &str, path: &str, token: &str, body: Option<&str>) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request_text(method, path, token, body, true).as_bytes())
        .await
        .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        code,
        headers,
        body: body.to_string(),
    }
}

async fn get(addr: SocketAddr, token: &str) -> Resp {
    call(addr, "GET", "/api/v1/namespaces/default", token, None).await
}

async fn create_configmap(addr: SocketAddr, token: &str, name: &str) -> Resp {
    let body =
        format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}}}}"#);
    call(
        addr,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        token,
        Some(&body),
    )
    .await
}

/// A watch on ConfigMaps in `default`, reading until `name` shows up.
struct Watch(TcpStream, Vec<u8>);

impl Watch {
    async fn open(addr: SocketAddr, token: &str) -> Self {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let path = "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0";
        s.write_all(request_text("GET", path, token, None, false).as_bytes())
            .await
            .expect("write");
        let mut w = Self(s, Vec::new());
        w.until("\r\n\r\n").await;
        assert!(
            String::from_utf8_lossy(&w.1).starts_with("HTTP/1.1 200"),
            "watch established: {}",
            String::from_utf8_lossy(&w.1)
        );
        w
    }

    async fn until(&mut self, needle: &str) {
        let read = async {
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&self.1).contains(needle) {
                let n = self.0.read(&mut buf).await.expect("read watch");
                assert!(n > 0, "watch ended before {needle}");
                self.1.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("watch line in time");
    }
}

async fn start(profile: &str) -> KubeSim {
    let latency = LatencyProfile::parse(profile, "test-profile.yaml").expect("profile");
    KubeSim::start(SimConfig {
        clusters: 1,
        latency,
        ..SimConfig::default()
    })
    .await
    .expect("kubesim starts")
}

async fn timed_gets(addr: SocketAddr, token: &str, n: usize) -> (Duration, Vec<Duration>) {
    let t0 = Instant::now();
    let mut each = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        assert_eq!(get(addr, token).await.code, 200);
        each.push(t.elapsed());
    }
    each.sort();
    (t0.elapsed(), each)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_get_latency_is_paid_by_every_request() {
    let sim = start("get: {p50Ms: 20, tail: 1}\n").await;
    let c = &sim.clusters()[0];
    let (total, each) = timed_gets(c.addr, &c.token, 20).await;
    assert!(
        total >= Duration::from_millis(400),
        "20 GETs took {total:?}"
    );
    assert!(
        each[10] >= Duration::from_millis(15),
        "median {:?}",
        each[10]
    );
    let stats = c.stats();
    assert_eq!(stats["latency"]["requestsDelayed"], 20, "{stats}");
    assert!(
        stats["latency"]["requestDelayMs"].as_u64() >= Some(400),
        "{stats}"
    );
    // The control plane keeps its own (default: none) profile.
    assert_eq!(sim.control_plane().stats()["latency"]["profile"], "none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_profile_adds_nothing() {
    let sim = KubeSim::start(SimConfig {
        clusters: 1,
        ..SimConfig::default()
    })
    .await
    .expect("kubesim starts");
    let c = &sim.clusters()[0];
    assert!(c.latency.is_none());
    let (total, _) = timed_gets(c.addr, &c.token, 20).await;
    assert!(total < Duration::from_secs(2), "20 GETs took {total:?}");
    assert_eq!(c.stats()["latency"]["requestsDelayed"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_lists_pay_their_class_delay() {
    let sim = start("write: {p50Ms: 60}\nlist: {p50Ms: 1, perItemUs: 20000}\n").await;
    let c = &sim.clusters()[0];
    let t = Instant::now();
    assert_eq!(create_configmap(c.addr, &c.token, "w").await.code, 201);
    assert!(
        t.elapsed() >= Duration::from_millis(60),
        "{:?}",
        t.elapsed()
    );
    // GETs are not in the profile: no delay counted for them.
    assert_eq!(get(c.addr, &c.token).await.code, 200);
    assert_eq!(c.stats()["latency"]["requestsDelayed"], 1);
    // Four namespaces at 20 ms each, plus the 1 ms base.
    let t = Instant::now();
    let list = call(c.addr, "GET", "/api/v1/namespaces", &c.token, None).await;
    assert_eq!(list.code, 200);
    let items = list.json()["items"].as_array().map_or(0, Vec::len);
    assert!(items >= 4, "{}", list.body);
    assert!(
        t.elapsed() >= Duration::from_millis(20 * items as u64),
        "{:?} for {items} items",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_arrive_after_their_delay() {
    let sim = start("watch: {p50Ms: 80}\n").await;
    let c = &sim.clusters()[0];
    let mut w = Watch::open(c.addr, &c.token).await;
    let t = Instant::now();
    assert_eq!(create_configmap(c.addr, &c.token, "late").await.code, 201);
    w.until("\"late\"").await;
    assert!(
        t.elapsed() >= Duration::from_millis(80),
        "{:?}",
        t.elapsed()
    );
    assert!(c.stats()["latency"]["watchEventsDelayed"].as_u64() >= Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after_per_client() {
    let sim = start("rateLimit: {qps: 1, burst: 5}\n").await;
    sim.add_token("bob-token", "bob");
    let c = &sim.clusters()[0];
    for i in 0..5 {
        assert_eq!(get(c.addr, &c.token).await.code, 200, "request {i}");
    }
    let limited = get(c.addr, &c.token).await;
    assert_eq!(limited.code, 429, "{}", limited.body);
    let body = limited.json();
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "TooManyRequests");
    let retry: u64 = limited
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry >= 1);
    assert_eq!(body["details"]["retryAfterSeconds"], retry);
    // Another identity has its own bucket; probes are exempt.
    assert_eq!(get(c.addr, "bob-token").await.code, 200);
    assert_eq!(call(c.addr, "GET", "/healthz", "", None).await.code, 200);
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(get(c.addr, &c.token).await.code, 200);
    assert_eq!(c.stats()["latency"]["rateLimited"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_counts_once_however_many_events_it_streams() {
    let sim = start("rateLimit: {qps: 0.01, burst: 5}\n").await;
    sim.add_token("bob-token", "bob");
    let c = &sim.clusters()[0];
    let mut w = Watch::open(c.addr, &c.token).await;
    for i in 0..5 {
        let name = format!("cm-{i}");
        assert_eq!(create_configmap(c.addr, "bob-token", &name).await.code, 201);
        w.until(&format!("\"{name}\"")).await;
    }
    for i in 0..4 {
        assert_eq!(get(c.addr, &c.token).await.code, 200, "request {i}");
    }
    assert_eq!(get(c.addr, &c.token).await.code, 429);
}
