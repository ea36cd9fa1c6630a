//! Deterministic synthetic sessions that look like real agent histories: several namespaces and
//! agents, keys such as `memory/…`, `plan/…`, `tool_calls/…`, JSON values from a few bytes to a
//! few KiB, deletes, multi-operation transactions, and wall-clock commit times with bursts and
//! idle gaps. The same seed always gives the same events (and so the same archive bytes).

use serde_json::{Map, Value, json};

use crate::event::{Event, JsonObject, ObjectValue, Operation};

/// SplitMix64: tiny, fast, and stable across versions (unlike a dependency's default RNG).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

const NAMESPACES: &[&str] = &["support", "research", "checkout", "ops"];
const AGENT_ROLES: &[&str] = &[
    "triage",
    "planner",
    "retriever",
    "writer",
    "reviewer",
    "executor",
    "summarizer",
    "router",
];
const WORDS: &[&str] = &[
    "customer",
    "refund",
    "order",
    "invoice",
    "shipment",
    "delayed",
    "account",
    "password",
    "reset",
    "policy",
    "escalate",
    "ticket",
    "priority",
    "search",
    "result",
    "document",
    "source",
    "summary",
    "draft",
    "review",
    "approved",
    "rejected",
    "retry",
    "timeout",
    "latency",
    "cache",
    "index",
    "query",
    "answer",
    "context",
    "memory",
    "plan",
    "step",
    "tool",
    "call",
    "error",
    "success",
    "pending",
    "user",
    "asked",
    "about",
    "the",
    "a",
    "for",
    "with",
    "from",
    "and",
    "to",
    "in",
    "of",
    "was",
    "is",
    "needs",
    "follow-up",
    "confirmed",
    "warehouse",
    "payment",
    "card",
    "declined",
    "address",
    "updated",
    "new",
    "old",
    "region",
    "eu-west",
    "us-east",
    "report",
    "quarterly",
    "metric",
    "dashboard",
    "alert",
    "deploy",
    "rollback",
    "incident",
];
const TOOLS: &[&str] = &[
    "web_search",
    "kb_lookup",
    "sql_query",
    "send_email",
    "create_ticket",
    "fetch_url",
    "calculator",
    "code_exec",
];
fn word(rng: &mut Rng) -> &'static str {
    WORDS[rng.below(WORDS.len() as u64) as usize]
}

const STATUSES: &[&str] = &["pending", "running", "done", "failed", "skipped"];

/// Options of [`Generator`].
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub seed: u64,
    /// Total number of agents, spread over up to four namespaces.
    pub agents: usize,
    /// Unix ns of the first commit.
    pub start_time_ns: u64,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            seed: 1,
            agents: 6,
            // 2026-11-02T09:00:00Z
            start_time_ns: 1_793_610_000_000_000_000,
        }
    }
}

struct Agent {
    namespace: std::sync::Arc<str>,
    agent_id: std::sync::Arc<str>,
    /// Live keys with their current version (bounded so that memory stays flat).
    keys: Vec<(String, u64)>,
    /// Versions of deleted keys, so a re-created key continues its version sequence.
    turn: u64,
    step: u64,
    call: u64,
}

/// An endless iterator of synthetic events.
pub struct Generator {
    rng: Rng,
    agents: Vec<Agent>,
    offset: u64,
    commit_ts: u64,
    time_ns: u64,
    current_agent: usize,
    burst_left: u32,
}

const MAX_KEYS_PER_AGENT: usize = 48;

impl Generator {
    pub fn new(options: GenOptions) -> Generator {
        let mut rng = Rng::new(options.seed);
        let n = options.agents.max(1);
        let ns_count = n.clamp(1, NAMESPACES.len());
        let agents = (0..n)
            .map(|i| {
                let role = AGENT_ROLES[i % AGENT_ROLES.len()];
                let suffix = rng.below(0x10000);
                Agent {
                    namespace: std::sync::Arc::from(NAMESPACES[i % ns_count]),
                    agent_id: std::sync::Arc::from(format!("{role}-{suffix:04x}")),
                    keys: Vec::new(),
                    turn: 0,
                    step: 0,
                    call: 0,
                }
            })
            .collect();
        Generator {
            rng,
            agents,
            offset: 0,
            commit_ts: 0,
            time_ns: options.start_time_ns,
            current_agent: 0,
            burst_left: 0,
        }
    }

    fn sentence(&mut self, min: u64, max: u64) -> String {
        let n = self.rng.range(min, max);
        let mut s = String::with_capacity(n as usize * 7);
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(word(&mut self.rng));
        }
        s
    }

    fn uuid(&mut self) -> String {
        let a = self.rng.next_u64();
        let b = self.rng.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    fn value_for(&mut self, key: &str) -> JsonObject {
        let r = &mut self.rng;
        let v = if key.starts_with("memory/") {
            // Never integral, so it stays a float through the Struct round trip.
            let conf = (r.below(999) + 1) as f64 / 1000.0;
            let tags: Vec<Value> = (0..r.below(4))
                .map(|_| Value::String(r.pick(WORDS).to_string()))
                .collect();
            let text = self.sentence(3, 24);
            json!({"text": text, "confidence": conf, "tags": tags, "source": "conversation"})
        } else if key.starts_with("plan/") {
            let step = r.below(20);
            let status = *r.pick(STATUSES);
            let deps: Vec<Value> = (0..r.below(3)).map(|_| json!(r.below(20))).collect();
            let description = self.sentence(3, 12);
            json!({"step": step, "status": status, "depends_on": deps, "description": description})
        } else if key.starts_with("tool_calls/") {
            let tool = *r.pick(TOOLS);
            let duration = r.range(3, 9000);
            let ok = r.chance(0.9);
            // Mostly short results; now and then a large payload (a fetched page, a query result).
            let result = if r.chance(0.015) {
                let rows = r.range(20, 100);
                let text = self.sentence(rows * 4, rows * 5);
                json!({"rows": rows, "content": text})
            } else {
                json!({"summary": self.sentence(2, 12)})
            };
            let query = self.sentence(1, 6);
            json!({"tool": tool, "args": {"query": query}, "ok": ok, "duration_ms": duration, "result": result})
        } else if key.starts_with("conversation/") {
            let role = if r.chance(0.5) { "user" } else { "assistant" };
            let content = self.sentence(2, 20);
            json!({"role": role, "content": content})
        } else {
            json!({"n": r.below(100)})
        };
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn new_key(&mut self, a: usize) -> String {
        let r = self.rng.below(100);
        let agent = &mut self.agents[a];
        if r < 30 {
            agent.turn += 1;
            format!("conversation/turn-{:05}", agent.turn)
        } else if r < 55 {
            agent.call += 1;
            format!("tool_calls/call-{:06}", agent.call)
        } else if r < 75 {
            agent.step += 1;
            format!("plan/step-{:03}", agent.step % 40)
        } else if r < 95 {
            let topic = word(&mut self.rng);
            format!("memory/{topic}")
        } else {
            format!("scratch/{}", self.rng.below(8))
        }
    }

    fn operation(&mut self, a: usize) -> Operation {
        let live = self.agents[a].keys.len();
        // Delete an existing key sometimes (always when the agent holds too many).
        if live > 0 && (live >= MAX_KEYS_PER_AGENT || self.rng.chance(0.08)) {
            let i = self.rng.below(live as u64) as usize;
            let (key, version) = self.agents[a].keys.swap_remove(i);
            return Operation {
                key: key.into(),
                value: None,
                version: version + 1,
            };
        }
        // Update an existing key or write a new one.
        if live > 0 && self.rng.chance(0.45) {
            let i = self.rng.below(live as u64) as usize;
            let key = self.agents[a].keys[i].0.clone();
            let value = self.value_for(&key);
            let entry = &mut self.agents[a].keys[i];
            entry.1 += 1;
            return Operation {
                key: key.into(),
                value: Some(ObjectValue::from_object(value)),
                version: entry.1,
            };
        }
        let key = self.new_key(a);
        let value = self.value_for(&key);
        let agent = &mut self.agents[a];
        let version = match agent.keys.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => {
                entry.1 += 1;
                entry.1
            }
            None => {
                agent.keys.push((key.clone(), 1));
                1
            }
        };
        Operation {
            key: key.into(),
            value: Some(ObjectValue::from_object(value)),
            version,
        }
    }

    fn advance_clock(&mut self) {
        let r = &mut self.rng;
        let ms: u64 = if self.burst_left > 0 {
            self.burst_left -= 1;
            r.range(1, 25)
        } else if r.chance(0.01) {
            // An idle gap: the user went away.
            r.range(5_000, 120_000)
        } else {
            r.range(40, 900)
        };
        self.time_ns += ms * 1_000_000 + r.below(1_000_000);
        if self.burst_left == 0 && r.chance(0.04) {
            self.burst_left = r.range(5, 60) as u32;
            // A burst is usually one agent working through tool calls.
            self.current_agent = r.below(self.agents.len() as u64) as usize;
        }
    }
}

impl Iterator for Generator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.advance_clock();
        if self.burst_left == 0 && self.rng.chance(0.3) {
            self.current_agent = self.rng.below(self.agents.len() as u64) as usize;
        }
        let a = self.current_agent;
        // Other agents' commits (on a shared daemon) leave gaps in this log's commit_ts.
        self.commit_ts += 1 + if self.rng.chance(0.2) {
            self.rng.below(4)
        } else {
            0
        };
        let n_ops = match self.rng.below(100) {
            0..=59 => 1,
            60..=84 => 2,
            85..=95 => 3,
            _ => self.rng.range(4, 8),
        };
        let operations = (0..n_ops).map(|_| self.operation(a)).collect();
        let txn_id = self.uuid();
        let agent = &self.agents[a];
        let event = Event {
            offset: self.offset,
            txn_id,
            commit_ts: self.commit_ts,
            commit_time_ns: Some(self.time_ns),
            namespace: agent.namespace.clone(),
            agent_id: agent.agent_id.clone(),
            operations,
        };
        self.offset += 1;
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_well_formed() {
        let a: Vec<Event> = Generator::new(GenOptions::default()).take(500).collect();
        let b: Vec<Event> = Generator::new(GenOptions::default()).take(500).collect();
        assert_eq!(a, b);
        let c: Vec<Event> = Generator::new(GenOptions {
            seed: 2,
            ..GenOptions::default()
        })
        .take(500)
        .collect();
        assert_ne!(a, c);
        for w in a.windows(2) {
            assert_eq!(w[1].offset, w[0].offset + 1);
            assert!(w[1].commit_ts > w[0].commit_ts);
            assert!(w[1].commit_time_ns >= w[0].commit_time_ns);
        }
        let deletes = a
            .iter()
            .flat_map(|e| &e.operations)
            .filter(|o| o.value.is_none())
            .count();
        assert!(deletes > 0);
        let multi = a.iter().filter(|e| e.operations.len() > 1).count();
        assert!(multi > 0);
        let agents: std::collections::BTreeSet<_> =
            a.iter().map(|e| (&e.namespace, &e.agent_id)).collect();
        assert_eq!(agents.len(), 6);
    }
}
