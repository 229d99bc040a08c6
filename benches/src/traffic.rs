//! Traffic shaped like one app's real Segment traffic: `/v1/batch` bodies of 100 calls (track, page, identify and
//! screen) as analytics.js, the iOS and Android libraries and the server libraries send them, with their `context`,
//! every ID, timestamp and free value drawn from a fixed seed, and every messageId distinct over the whole run.
//!
//! Bodies are drawn once into a pool of templates (so that drawing them costs the load generator nothing while it
//! measures), and each request stamps fresh messageIds into a copy of one. A messageId ends in twelve decimal digits
//! (still hex, so a UUID stays a UUID) that carry its number: request number times 100 plus its index. A receiver
//! reads the number back with [`message_number`] to check that what was acknowledged arrived.
//!
//! What repeats is what repeats in one app's traffic: JSON keys, the app's name and version, library names, event
//! names, locales and the few user agents of a device fleet. A body compresses 2x to 4x with LZ4
//! ([`lz4_ratio`]), as one app's batches do; values drawn from random letters alone would compress less than any
//! real traffic, and repeated values far more.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde_json::{Value, json};

/// Calls per request.
pub const PER_REQUEST: u64 = 100;

/// How many distinct bodies the pool holds: 256 bodies of 100 calls, about 20 MB.
const POOL: usize = 256;

/// The seed every run starts from, so that runs compare.
pub const SEED: u64 = 0x5e67_3e47_c0ff_ee01;

/// Where a messageId's number is written: its last twelve characters.
const NUMBER_DIGITS: usize = 12;
const PLACEHOLDER: &str = "@@@@@@@@@@@@";

/// A pool of bodies and the counter that numbers their requests. Shared by every connection of a load.
pub struct Traffic {
    templates: Vec<Template>,
    next: AtomicU64,
}

struct Template {
    body: Vec<u8>,
    /// Offsets of the messageIds' number digits, in message order.
    numbers: Vec<usize>,
}

/// One request: its number and its body.
pub struct Request {
    /// The request's number; its messages are numbered `number * 100 + index`.
    pub number: u64,
    /// The `/v1/batch` body.
    pub body: Bytes,
}

impl Traffic {
    /// The pool drawn from [`SEED`]; requests are numbered from `first`, so that loads in one process can share a
    /// receiver without their messageIds meeting.
    pub fn new(first: u64) -> Arc<Traffic> {
        let mut random = Random(SEED);
        let templates = (0..POOL).map(|_| Template::draw(&mut random)).collect();
        Arc::new(Traffic { templates, next: AtomicU64::new(first) })
    }

    /// The next request, with messageIds no earlier request had.
    pub fn next(&self) -> Request {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let template = &self.templates[(number % self.templates.len() as u64) as usize];
        let mut body = template.body.clone();
        for (index, &at) in template.numbers.iter().enumerate() {
            let digits = format!("{:0width$}", number * PER_REQUEST + index as u64, width = NUMBER_DIGITS);
            body[at..at + NUMBER_DIGITS].copy_from_slice(digits.as_bytes());
        }
        Request { number, body: Bytes::from(body) }
    }

    /// A sample body (the pool's first), for sizes and compression ratios.
    pub fn sample(&self) -> &[u8] {
        &self.templates[0].body
    }

    /// The mean body size over the pool.
    pub fn mean_body_bytes(&self) -> usize {
        self.templates.iter().map(|t| t.body.len()).sum::<usize>() / self.templates.len()
    }

    /// The pool's bytes over what LZ4 (the spool's block compression) makes of each body: the compression ratio of
    /// the traffic.
    pub fn lz4_ratio(&self) -> f64 {
        let (plain, packed) = self.templates.iter().fold((0, 0), |(plain, packed), t| {
            (plain + t.body.len(), packed + lz4_flex::block::compress(&t.body).len())
        });
        plain as f64 / packed as f64
    }
}

/// The number a messageId of this traffic carries, if it is one.
pub fn message_number(message_id: &str) -> Option<u64> {
    let digits = message_id.get(message_id.len().checked_sub(NUMBER_DIGITS)?..)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The messageId of a message's JSON, found without parsing the rest of it.
pub fn message_id_of(json: &[u8]) -> Option<&str> {
    const KEY: &[u8] = br#""messageId":""#;
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(KEY));
    let start = FINDER.find(json)? + KEY.len();
    let length = memchr::memchr(b'"', &json[start..])?;
    std::str::from_utf8(&json[start..start + length]).ok()
}

/// Which numbered messages a receiver got: one bit per message number, set from any thread.
pub struct Arrivals {
    bits: Vec<AtomicU64>,
    /// Messages whose ID carried no number, or one beyond the bits.
    pub strangers: AtomicU64,
}

impl Arrivals {
    /// Room for message numbers below `capacity`.
    pub fn new(capacity: u64) -> Arrivals {
        Arrivals { bits: (0..capacity.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(), strangers: AtomicU64::new(0) }
    }

    /// Notes the message whose messageId is `message_id`.
    pub fn mark(&self, message_id: Option<&str>) {
        match message_id.and_then(message_number).filter(|n| (*n / 64) < self.bits.len() as u64) {
            Some(n) => drop(self.bits[(n / 64) as usize].fetch_or(1 << (n % 64), Ordering::Relaxed)),
            None => drop(self.strangers.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// How many messages of the requests numbered `acknowledged` never arrived.
    pub fn missing(&self, acknowledged: &[u64]) -> u64 {
        let arrived = |n: u64| {
            self.bits.get((n / 64) as usize).is_some_and(|word| word.load(Ordering::Relaxed) & (1 << (n % 64)) != 0)
        };
        acknowledged
            .iter()
            .flat_map(|request| (0..PER_REQUEST).map(move |i| request * PER_REQUEST + i))
            .filter(|&n| !arrived(n))
            .count() as u64
    }
}

/// splitmix64's finalizer: a bijection on u64, so distinct inputs give distinct outputs, spread evenly.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// splitmix64: small, fast and reproducible from its seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    fn hex(&mut self, digits: usize) -> String {
        (0..digits).map(|_| char::from_digit(self.below(16) as u32, 16).unwrap()).collect()
    }

    fn uuid(&mut self) -> String {
        format!("{}-{}-4{}-{}-{}", self.hex(8), self.hex(4), self.hex(3), self.hex(4), self.hex(12))
    }

    /// A UUID whose last twelve characters are the placeholder the number is stamped over.
    fn numbered_uuid(&mut self) -> String {
        format!("{}-{}-4{}-{}-{PLACEHOLDER}", self.hex(8), self.hex(4), self.hex(3), self.hex(4))
    }

    fn words(&mut self, count: usize) -> Vec<&'static str> {
        (0..count).map(|_| self.pick(WORDS)).collect()
    }

    /// A time in November 2026, to the millisecond.
    fn timestamp(&mut self) -> String {
        let ms = self.below(30 * 86_400_000);
        let (day, rest) = (ms / 86_400_000, ms % 86_400_000);
        let (hour, minute, second, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
        format!("2026-11-{:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z", day + 1)
    }
}

const WORDS: &[&str] = &[
    "summer", "classic", "wireless", "organic", "running", "leather", "travel", "kitchen", "garden", "vintage",
    "compact", "premium", "cotton", "bamboo", "smart", "outdoor", "studio", "urban", "linen", "ceramic", "steel",
    "family", "pocket", "deluxe", "coffee", "yoga", "winter", "pro", "mini", "max", "nordic", "alpine", "coastal",
    "velvet", "crystal", "harbor", "maple", "cedar", "river", "canyon", "meadow", "ember", "atlas", "lumen", "vista",
];
/// The track events of the server calls.
pub const SERVER_EVENTS: &[&str] = &["Order Completed", "Subscription Renewed", "Invoice Paid", "Signed Up"];

/// The track events of the browser and mobile calls.
pub const EVENTS: &[&str] = &[
    "Product Viewed",
    "Product Added",
    "Product Clicked",
    "Cart Viewed",
    "Checkout Started",
    "Order Completed",
    "Products Searched",
    "Signed In",
    "Promotion Viewed",
    "Coupon Applied",
];
const CATEGORIES: &[&str] = &["Games", "Books", "Apparel", "Home", "Outdoors", "Electronics", "Beauty", "Toys"];
const LOCALES: &[&str] = &["en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "ja-JP", "pt-BR"];
const TIMEZONES: &[&str] =
    &["America/New_York", "America/Los_Angeles", "Europe/Berlin", "Europe/London", "Asia/Tokyo", "America/Sao_Paulo"];
const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
];
const IPHONES: &[&str] = &["iPhone15,2", "iPhone15,3", "iPhone16,1", "iPhone16,2", "iPhone17,1"];
const ANDROIDS: &[(&str, &str)] =
    &[("samsung", "SM-S921B"), ("samsung", "SM-A546B"), ("Google", "Pixel 8"), ("Google", "Pixel 9 Pro")];
const CARRIERS: &[&str] = &["T-Mobile", "Verizon", "AT&T", "Vodafone", "Orange"];
const DOMAINS: &[&str] = &["gmail.com", "yahoo.com", "outlook.com", "icloud.com", "example.org"];

impl Template {
    fn draw(random: &mut Random) -> Template {
        let sent_at = random.timestamp();
        let items: Vec<Value> = (0..PER_REQUEST).map(|_| call(random)).collect();
        let body = serde_json::to_vec(&json!({"batch": items, "sentAt": sent_at})).expect("JSON serializes");
        let numbers: Vec<usize> = memchr::memmem::find_iter(&body, PLACEHOLDER.as_bytes()).collect::<Vec<_>>();
        assert_eq!(numbers.len(), PER_REQUEST as usize, "every call has one numbered messageId");
        Template { body, numbers }
    }
}

/// One call, from one of the libraries in the proportions of an app with a website, two mobile apps and a backend.
fn call(random: &mut Random) -> Value {
    match random.below(10) {
        0..=3 => browser(random),
        4..=5 => ios(random),
        6..=7 => android(random),
        _ => server(random),
    }
}

fn product(random: &mut Random) -> Value {
    let length = 2 + random.below(2);
    let name: Vec<&str> = random.words(length);
    json!({
        "product_id": random.hex(24),
        "sku": format!("{}-{}", random.below(90_000) + 10_000, random.below(90) + 10),
        "name": name.join(" "),
        "category": random.pick(CATEGORIES),
        "price": (random.below(20_000) + 99) as f64 / 100.0,
        "quantity": 1 + random.below(3),
    })
}

fn properties(random: &mut Random, event: &str) -> Value {
    match event {
        "Order Completed" | "Checkout Started" => {
            let products: Vec<Value> = (0..1 + random.below(3)).map(|_| product(random)).collect();
            json!({"order_id": random.hex(24), "total": (random.below(50_000) + 500) as f64 / 100.0, "currency": "USD", "products": products})
        }
        "Products Searched" => json!({"query": random.words(2).join(" ")}),
        "Signed In" => json!({"method": if random.below(2) == 0 { "email" } else { "google" }}),
        "Coupon Applied" => json!({"coupon_id": random.hex(10), "discount": random.below(40) + 5}),
        _ => product(random),
    }
}

fn browser(random: &mut Random) -> Value {
    let path =
        format!("/{}/{}-{}", random.pick(CATEGORIES).to_lowercase(), random.words(2).join("-"), random.below(10_000));
    let title = format!("{} | Acme Store", random.words(3).join(" "));
    let page = json!({"path": path, "referrer": "https://www.google.com/", "search": "", "title": title, "url": format!("https://shop.acme.example{path}")});
    let (timestamp, anonymous_id) = (random.timestamp(), random.uuid());
    let mut message = json!({
        "anonymousId": anonymous_id,
        "context": {
            "library": {"name": "analytics.js", "version": "npm:next-1.76.0"},
            "locale": random.pick(LOCALES),
            "page": page,
            "userAgent": random.pick(BROWSERS),
            "userAgentData": {"brands": [{"brand": "Chromium", "version": "131"}, {"brand": "Not_A Brand", "version": "24"}], "mobile": false, "platform": "macOS"},
        },
        "integrations": {},
        "messageId": format!("ajs-next-{}{PLACEHOLDER}", random.hex(20)),
        "originalTimestamp": timestamp,
        "timestamp": timestamp,
        "writeKey": "bench-write-key",
    });
    if random.below(3) > 0 {
        message["userId"] = json!(format!("usr_{}", random.hex(16)));
    }
    match random.below(10) {
        0..=4 => {
            let event = random.pick(EVENTS);
            message["type"] = json!("track");
            message["event"] = json!(event);
            message["properties"] = properties(random, event);
        }
        5..=8 => {
            message["type"] = json!("page");
            message["name"] = json!(random.pick(CATEGORIES));
            message["properties"] = message["context"]["page"].clone();
        }
        _ => {
            message["type"] = json!("identify");
            message["userId"] = json!(format!("usr_{}", random.hex(16)));
            message["traits"] = traits(random);
        }
    }
    message
}

fn traits(random: &mut Random) -> Value {
    let (first, last) = (random.pick(WORDS), random.pick(WORDS));
    json!({
        "email": format!("{first}.{last}{}@{}", random.below(10_000), random.pick(DOMAINS)),
        "name": format!("{first} {last}"),
        "plan": if random.below(4) == 0 { "pro" } else { "free" },
        "createdAt": random.timestamp(),
    })
}

fn mobile_call(random: &mut Random, message: &mut Value) {
    match random.below(10) {
        0..=5 => {
            let event = random.pick(EVENTS);
            message["type"] = json!("track");
            message["event"] = json!(event);
            message["properties"] = properties(random, event);
        }
        6..=8 => {
            message["type"] = json!("screen");
            message["name"] = json!(format!("{} Screen", random.pick(CATEGORIES)));
            message["properties"] = json!({"name": format!("{} Screen", random.pick(CATEGORIES))});
        }
        _ => {
            message["type"] = json!("identify");
            message["traits"] = traits(random);
        }
    }
}

fn ios(random: &mut Random) -> Value {
    let timestamp = random.timestamp();
    let mut message = json!({
        "anonymousId": random.uuid().to_uppercase(),
        "userId": format!("usr_{}", random.hex(16)),
        "context": {
            "app": {"build": "4182", "name": "Acme Store", "namespace": "com.acme.store", "version": "7.12.0"},
            "device": {"adTrackingEnabled": false, "id": random.uuid().to_uppercase(), "manufacturer": "Apple", "model": random.pick(IPHONES), "name": "iPhone", "type": "ios"},
            "library": {"name": "analytics-swift", "version": "1.7.3"},
            "locale": random.pick(LOCALES),
            "network": {"bluetooth": false, "cellular": random.below(2) == 0, "wifi": random.below(2) == 0, "carrier": random.pick(CARRIERS)},
            "os": {"name": "iOS", "version": "18.1.1"},
            "screen": {"height": 852, "width": 393},
            "timezone": random.pick(TIMEZONES),
            "instanceId": random.uuid().to_uppercase(),
        },
        "integrations": {},
        // The placeholder has no case, so it survives the upper-casing iOS's UUIDs get.
        "messageId": random.numbered_uuid().to_uppercase(),
        "timestamp": timestamp,
    });
    mobile_call(random, &mut message);
    message
}

fn android(random: &mut Random) -> Value {
    let (manufacturer, model) = ANDROIDS[random.below(ANDROIDS.len())];
    let timestamp = random.timestamp();
    let mut message = json!({
        "anonymousId": random.uuid(),
        "userId": format!("usr_{}", random.hex(16)),
        "context": {
            "app": {"build": "70120", "name": "Acme Store", "namespace": "com.acme.store", "version": "7.12.0"},
            "device": {"id": random.hex(16), "manufacturer": manufacturer, "model": model, "name": model, "type": "android"},
            "library": {"name": "analytics-kotlin", "version": "1.18.2"},
            "locale": random.pick(LOCALES),
            "network": {"bluetooth": false, "carrier": random.pick(CARRIERS), "cellular": random.below(2) == 0, "wifi": random.below(2) == 0},
            "os": {"name": "Android", "version": "15"},
            "screen": {"density": 2.625, "height": 2274, "width": 1080},
            "timezone": random.pick(TIMEZONES),
            "userAgent": format!("Dalvik/2.1.0 (Linux; U; Android 15; {model} Build/AP3A.241105.008)"),
            "instanceId": random.uuid(),
        },
        "integrations": {},
        "messageId": random.numbered_uuid(),
        "timestamp": timestamp,
    });
    mobile_call(random, &mut message);
    message
}

fn server(random: &mut Random) -> Value {
    let (library, version) =
        if random.below(2) == 0 { ("@segment/analytics-node", "2.2.1") } else { ("analytics-python", "2.3.3") };
    let mut message = json!({
        "userId": format!("usr_{}", random.hex(16)),
        "context": {"library": {"name": library, "version": version}},
        "integrations": {},
        "messageId": random.numbered_uuid(),
        "timestamp": random.timestamp(),
    });
    if random.below(4) == 0 {
        message["type"] = json!("identify");
        message["traits"] = traits(random);
    } else {
        let event = random.pick(SERVER_EVENTS);
        message["type"] = json!("track");
        message["event"] = json!(event);
        message["properties"] = properties(random, event);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_id_is_distinct_and_numbered_and_the_body_compresses_like_one_apps_traffic() {
        let traffic = Traffic::new(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 * POOL {
            let request = traffic.next();
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let batch = body["batch"].as_array().unwrap();
            assert_eq!(batch.len(), PER_REQUEST as usize);
            for (index, message) in batch.iter().enumerate() {
                let id = message["messageId"].as_str().unwrap();
                assert_eq!(message_number(id), Some(request.number * PER_REQUEST + index as u64), "{id}");
                assert!(seen.insert(id.to_owned()), "{id} twice");
            }
        }
        let ratio = traffic.lz4_ratio();
        assert!((2.0..=4.0).contains(&ratio), "LZ4 ratio {ratio:.2}");
        let sample: Value = serde_json::from_slice(traffic.sample()).unwrap();
        let kinds: std::collections::HashSet<&str> =
            sample["batch"].as_array().unwrap().iter().map(|m| m["type"].as_str().unwrap()).collect();
        assert!(kinds.len() >= 4, "{kinds:?}");
    }

    #[test]
    fn message_ids_are_found_in_json() {
        let json = br#"{"type":"track","messageId":"ajs-next-0123456789abcdef0123000000004217","event":"x"}"#;
        let id = message_id_of(json).unwrap();
        assert_eq!(message_number(id), Some(4217));
        assert_eq!(message_number("short"), None);
        assert_eq!(message_id_of(b"{}"), None);
    }
}
