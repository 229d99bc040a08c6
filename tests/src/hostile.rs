//! Hostile request bodies and the server CPU time each one costs, against an ordinary batch of the same size.
//!
//! Both the runner's suite (a debug build) and `cargo xtask bench` (a release build) drive a running
//! `tributary serve` with these shapes and read the server's CPU time from `/proc`, so the figure is the server's
//! own work: the load generator and anything else on the machine do not count.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

/// How large each hostile body is, before any gzip: about the size of the ordinary batch it is compared with.
pub const BODY_BYTES: usize = 480 * 1024;

/// One request body to try.
pub struct Shape {
    /// What it is.
    pub name: &'static str,
    /// The endpoint.
    pub path: &'static str,
    /// The JSON body.
    pub body: Vec<u8>,
    /// The status the right key gets: 200 as Segment answers a parsed request, 400 for a body that is not JSON
    /// Tributary will parse (too deep, a number too long) or one whose batch context would expand past the limits.
    pub answers: u16,
}

impl Shape {
    /// The status the shape gets with the key presented as `how`: a wrong Basic key is refused before the body
    /// is read (401); a wrong key in the body is found once the body is parsed (401), so a body refused as
    /// unparsable stays 400.
    pub fn expected(&self, how: Key) -> u16 {
        match how {
            Key::Right => self.answers,
            Key::WrongBasic => 401,
            Key::WrongInBody if self.answers == 400 => 400,
            Key::WrongInBody => 401,
        }
    }
}

/// A track call of about 600 bytes, as a server library sends it; `i` makes its user and messageId.
pub fn product_viewed(i: usize) -> serde_json::Value {
    json!({
        "type": "track",
        "userId": format!("user_{i:06}"),
        "event": "Product Viewed",
        "messageId": format!("bench-{i:04}-0a1b2c3d-4e5f-6789-abcd-ef0123456789"),
        "timestamp": "2026-11-25T23:54:55.123Z",
        "properties": {"product_id": "507f1f77bcf86cd799439011", "sku": "G-32", "name": "Monopoly: 3rd Edition", "price": 18.99, "category": "Games", "url": "https://www.example.com/product/path", "image_url": "https://www.example.com/product/path.jpg", "position": i},
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}, "ip": "203.0.113.7", "locale": "en-US", "userAgent": "Mozilla/5.0 (X11; Linux x86_64)"}
    })
}

/// A batch of `count` [`product_viewed`] calls.
pub fn batch_of(count: usize) -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..count).map(product_viewed).collect();
    serde_json::to_vec(&json!({"batch": items, "sentAt": "2026-11-25T23:54:55.500Z"})).expect("JSON serializes")
}

/// An ordinary batch of about 480 KB: 800 track calls of about 600 bytes.
pub fn ordinary_batch() -> Vec<u8> {
    batch_of(800)
}

/// Repeats `piece` (numbered from `{i}`) until the body reaches [`BODY_BYTES`], joined by `separator`.
fn fill(prefix: &str, piece: impl Fn(usize) -> String, separator: &str, suffix: &str) -> Vec<u8> {
    let mut body = String::from(prefix);
    let mut i = 0;
    while body.len() + suffix.len() < BODY_BYTES {
        if i > 0 {
            body.push_str(separator);
        }
        body.push_str(&piece(i));
        i += 1;
    }
    body.push_str(suffix);
    body.into_bytes()
}

/// A `/v1/batch` body of these raw JSON items.
fn batch_body(items: &[String]) -> Vec<u8> {
    format!(r#"{{"batch":[{}]}}"#, items.join(",")).into_bytes()
}

/// The adversarial shapes: each aims at a step that could be more than linear in the body.
///
/// Long on purpose: one table, one entry per shape, reads better whole than cut into helpers.
pub fn shapes() -> Vec<Shape> {
    let item = r#"{"batch":[{"type":"track","userId":"u","event":"e","#;
    vec![
        Shape {
            name: "45,000 distinct keys in one message",
            answers: 200,
            path: "/v1/batch",
            body: fill(item, |i| format!(r#""k{i}":1"#), ",", "}]}"),
        },
        Shape {
            name: "one key repeated 45,000 times",
            answers: 200,
            path: "/v1/batch",
            body: fill(item, |_| r#""k":123"#.to_owned(), ",", "}]}"),
        },
        Shape {
            name: "tens of thousands of keys in properties",
            answers: 200,
            path: "/v1/batch",
            body: fill(
                r#"{"batch":[{"type":"track","userId":"u","event":"e","properties":{"#,
                |i| format!(r#""p{i}":1"#),
                ",",
                "}}]}",
            ),
        },
        Shape {
            name: "nesting 240,000 levels deep",
            answers: 400,
            path: "/v1/batch",
            body: {
                let depth = (BODY_BYTES - 100) / 2;
                format!(
                    r#"{{"batch":[{{"type":"track","userId":"u","event":"e","properties":{{"p":{}{}}}}}]}}"#,
                    "[".repeat(depth),
                    "]".repeat(depth)
                )
                .into_bytes()
            },
        },
        Shape {
            name: "1,600 messages nested 114 levels deep",
            answers: 200,
            path: "/v1/batch",
            body: {
                let nested = format!("{}{}", "[".repeat(110), "]".repeat(110));
                let items: Vec<String> = (0..1_600)
                    .map(|i| format!(r#"{{"type":"track","userId":"u{i}","event":"e","properties":{{"p":{nested}}}}}"#))
                    .collect();
                batch_body(&items)
            },
        },
        Shape {
            name: "one string of 80,000 \\u escapes",
            answers: 200,
            path: "/v1/batch",
            body: fill(
                r#"{"batch":[{"type":"track","userId":"u","event":"e","properties":{"s":""#,
                |_| r"\u00e9".to_owned(),
                "",
                r#""}}]}"#,
            ),
        },
        Shape {
            name: "20 messages of 12,000 escaped quotes each",
            answers: 200,
            path: "/v1/batch",
            body: {
                let escapes = r#"\""#.repeat(12_000);
                let items: Vec<String> = (0..20)
                    .map(|i| {
                        format!(r#"{{"type":"track","userId":"u{i}","event":"e","properties":{{"s":"{escapes}"}}}}"#)
                    })
                    .collect();
                batch_body(&items)
            },
        },
        Shape {
            name: "2,500 tiny messages",
            answers: 200,
            path: "/v1/batch",
            body: {
                let pad = "x".repeat(130);
                let items: Vec<String> = (0..2_500)
                    .map(|i| format!(r#"{{"type":"track","userId":"u{i}","event":"e","properties":{{"p":"{pad}"}}}}"#))
                    .collect();
                batch_body(&items)
            },
        },
        Shape {
            name: "a number literal of 470,000 digits",
            answers: 400,
            path: "/v1/batch",
            body: fill(
                r#"{"batch":[{"type":"track","userId":"u","event":"e","properties":{"n":1"#,
                |_| "0".to_owned(),
                "",
                "}}]}",
            ),
        },
        Shape {
            name: "1,400 messages with 150-digit numbers",
            answers: 200,
            path: "/v1/batch",
            body: {
                let digits = "7".repeat(150);
                let items: Vec<String> = (0..1_400)
                    .map(|_| {
                        format!(r#"{{"type":"track","userId":{digits},"event":"e","properties":{{"n":{digits}}}}}"#)
                    })
                    .collect();
                batch_body(&items)
            },
        },
        Shape {
            name: "a 300 KB batch context for 2,400 messages",
            answers: 400,
            path: "/v1/batch",
            body: {
                let items: Vec<String> =
                    (0..2_400).map(|i| format!(r#"{{"type":"track","userId":"u{i}","event":"e"}}"#)).collect();
                let context = "c".repeat(300 * 1024);
                format!(r#"{{"batch":[{}],"context":{{"pad":"{context}"}}}}"#, items.join(",")).into_bytes()
            },
        },
        Shape {
            name: "a single call of 32 KB of keys",
            answers: 200,
            path: "/v1/track",
            body: {
                let keys: Vec<String> = (0..2_900).map(|i| format!(r#""k{i}":1"#)).collect();
                format!(r#"{{"userId":"u","event":"e",{}}}"#, keys.join(",")).into_bytes()
            },
        },
    ]
}

/// How the write key is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// The right key, as Basic auth.
    Right,
    /// A wrong key, as Basic auth: refused before the body is read.
    WrongBasic,
    /// A wrong key in the body: refused once the body is parsed.
    WrongInBody,
}

impl Key {
    /// Every way.
    pub const ALL: [Key; 3] = [Key::Right, Key::WrongBasic, Key::WrongInBody];

    fn label(self) -> &'static str {
        match self {
            Key::Right => "right key",
            Key::WrongBasic => "wrong Basic key",
            Key::WrongInBody => "wrong body key",
        }
    }
}

/// One measured series.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Shape, key and encoding.
    pub label: String,
    /// The status of every answer of the series.
    pub status: u16,
    /// The status the series should get.
    pub expected: u16,
    /// Server CPU time per request.
    pub cpu: Duration,
}

/// What [`measure`] found.
#[derive(Debug, Clone)]
pub struct Report {
    /// Server CPU time per ordinary 480 KB batch.
    pub ordinary: Duration,
    /// Every hostile series.
    pub series: Vec<Measured>,
}

impl Report {
    /// The largest ratio of a hostile series to the ordinary batch, and its label.
    pub fn worst(&self) -> (f64, &str) {
        self.series
            .iter()
            .map(|m| (m.cpu.as_secs_f64() / self.ordinary.as_secs_f64(), m.label.as_str()))
            .fold((0.0, ""), |worst, this| if this.0 > worst.0 { this } else { worst })
    }

    /// One line per series: label, status, CPU per request and ratio.
    pub fn table(&self) -> String {
        let mut out =
            format!("  ordinary 480 KB batch (right key): {:.2} ms of server CPU per request\n", ms(self.ordinary));
        for m in &self.series {
            out.push_str(&format!(
                "  {:<66} {} {:>8.2} ms  {:>5.2}x\n",
                m.label,
                m.status,
                ms(m.cpu),
                m.cpu.as_secs_f64() / self.ordinary.as_secs_f64()
            ));
        }
        out
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The CPU time (user and system, every thread, living or exited) the process `pid` has used.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after its closing parenthesis are fixed.
    let rest = stat.rsplit_once(')').context("malformed /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // Linux reports these in USER_HZ, which is 100 on every architecture it supports.
    Ok(Duration::from_millis(ticks * 10))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// Sends `body` to `url` `reps` times and waits until the server has delivered what it accepted; returns the last
/// status and the server CPU time per request.
async fn series(
    client: &reqwest::Client,
    pid: u32,
    url: &str,
    key: &str,
    (path, body, gzipped, how): (&str, &[u8], bool, Key),
    reps: usize,
) -> anyhow::Result<(u16, Duration)> {
    let body = match gzipped {
        true => gzip(body),
        false => body.to_vec(),
    };
    let before = cpu_time(pid)?;
    let mut status = None;
    for _ in 0..reps {
        let mut request = client.post(format!("{url}{path}")).header("content-type", "application/json");
        if gzipped {
            request = request.header("content-encoding", "gzip");
        }
        request = match how {
            Key::Right => request.basic_auth(key, Some("")),
            Key::WrongBasic => request.basic_auth("not-the-key", Some("")),
            Key::WrongInBody => request,
        };
        let response = request
            .body(body.clone())
            .send()
            .await
            .with_context(|| format!("the server did not answer a request to {path} ({how:?}, gzip: {gzipped})"))?;
        let answered = response.status().as_u16();
        if status.is_some_and(|s| s != answered) {
            bail!("a series to {path} ({how:?}, gzip: {gzipped}) was answered both {} and {answered}", status.unwrap());
        }
        status = Some(answered);
        response.bytes().await.context("reading the answer")?;
    }
    settle(client, url).await?;
    Ok((status.unwrap_or_default(), (cpu_time(pid)? - before) / reps as u32))
}

/// Waits until the server's spool is empty, so that delivery is counted in the request that caused it.
async fn settle(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        let health: serde_json::Value = client.get(format!("{url}/health")).send().await?.json().await?;
        if health["spool_depth"] == 0 {
            return Ok(());
        }
        if Instant::now() > give_up {
            bail!("the spool did not drain: {health}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Measures every shape, with every key and with and without gzip, against the ordinary batch, `reps` requests
/// each, on the server `pid` listening at `url` whose source has the write key `key`.
pub async fn measure(pid: u32, url: &str, key: &str, reps: usize) -> anyhow::Result<Report> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let ordinary_body = ordinary_batch();
    // Once to warm up, then measured.
    series(&client, pid, url, key, ("/v1/batch", &ordinary_body, false, Key::Right), 1).await?;
    let ordinary_series = || series(&client, pid, url, key, ("/v1/batch", &ordinary_body, false, Key::Right), reps);
    let (status, before) = ordinary_series().await?;
    if status != 200 {
        bail!("the ordinary batch was answered {status}");
    }
    let mut measured = Vec::new();
    for shape in shapes() {
        for how in Key::ALL {
            for gzipped in [false, true] {
                let body = match how {
                    Key::WrongInBody => with_body_key(&shape.body),
                    _ => shape.body.clone(),
                };
                let (status, cpu) = series(&client, pid, url, key, (shape.path, &body, gzipped, how), reps).await?;
                let encoding = if gzipped { ", gzip" } else { "" };
                let label = format!("{} ({}{encoding})", shape.name, how.label());
                measured.push(Measured { label, status, expected: shape.expected(how), cpu });
            }
        }
    }
    // Measured again at the end, and the two averaged: the machine's speed drifts over the minute the series take
    // (other suites share its cores), and a baseline taken in one quiet moment made the ratios swing by half.
    let (_, after) = ordinary_series().await?;
    Ok(Report { ordinary: (before + after) / 2, series: measured })
}

/// The body with a wrong `writeKey` as its first field.
fn with_body_key(body: &[u8]) -> Vec<u8> {
    let mut out = br#"{"writeKey":"not-the-key","#.to_vec();
    out.extend_from_slice(&body[1..]);
    out
}
