//! Realistic Kubernetes-like JSON objects for store tests and benches: 0.5 to 20 KiB,
//! deterministic for a seed, shaped like real objects (metadata with labels and
//! managedFields, a spec, a status) so that compression ratios mean something.

/// A small deterministic PRNG (splitmix64), so fixtures need no extra dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

const WORDS: &[&str] = &[
    "app", "web", "api", "worker", "cache", "db", "frontend", "backend", "payments", "search",
    "metrics", "ingest", "batch", "auth", "gateway", "queue", "redis", "postgres", "kafka",
];

/// The `n`-th object of the fixture with `seed`: a ConfigMap-like object whose size lies
/// between 0.5 and 20 KiB (most of them 1-4 KiB, as in real clusters).
pub fn object(seed: u64, n: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let word = |rng: &mut Rng| WORDS[rng.below(WORDS.len() as u64) as usize];
    let target = match rng.below(100) {
        0..=9 => 512 + rng.below(512),
        10..=84 => 1024 + rng.below(3 * 1024),
        85..=97 => 4096 + rng.below(8 * 1024),
        _ => 12 * 1024 + rng.below(8 * 1024),
    } as usize;
    let name = format!(
        "{}-{}-{:x}",
        word(&mut rng),
        word(&mut rng),
        rng.next_u64() & 0xffff_ffff
    );
    let namespace = format!("team-{}", rng.below(50));
    let mut data = serde_json::Map::new();
    let mut size = 600;
    let mut i = 0;
    while size < target {
        let value: String = (0..(20 + rng.below(200)))
            .map(|_| {
                let w = word(&mut rng);
                if rng.below(4) == 0 {
                    format!("{w}={} ", rng.below(10_000))
                } else {
                    format!("{w} ")
                }
            })
            .collect();
        size += value.len() + 20;
        data.insert(format!("{}-{i}.conf", word(&mut rng)), value.into());
        i += 1;
    }
    let object = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": word(&mut rng), "app.kubernetes.io/part-of": word(&mut rng)},
            "annotations": {"seed": seed, "n": n},
        },
        "data": data,
    });
    serde_json::to_vec(&object).expect("fixture objects serialize")
}

/// Standard base64 with padding, as Secret `data` holds values.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
