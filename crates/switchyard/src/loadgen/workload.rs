//! What the load generator sends and when: a seeded arrival timetable and multi-turn
//! conversations whose turns share prefixes.
//!
//! **Timetable.** Arrivals are open-loop: their times are drawn before anything is sent and
//! never wait for a response. `poisson` spaces them by exponential gaps of mean `1 / rate`
//! (seeded), `fixed` by exactly `1 / rate`.
//!
//! **Conversations.** The workload runs `conversations` lanes side by side; each lane runs one
//! conversation of `turns` turns after another. Each arrival is the next turn of a lane drawn
//! at random (seeded), so consecutive turns of a conversation are on average `lanes / rate`
//! seconds apart, with no fixed stride (with arrival `i` on lane `i mod lanes`, a round-robin
//! balancer over a number of engines dividing `lanes` would send every turn of a conversation
//! to the same engine by coincidence). A conversation opens with a system prompt of
//! `system_prompt_tokens` words (one per conversation, or one per group when `groups > 0`, so
//! several conversations share it), and each turn resends every earlier message, the
//! assistant's replies as received included, plus a new user message of `user_tokens` words:
//! each turn's prompt begins with the whole previous prompt, which a prefix cache can reuse.
//!
//! Which turn of which conversation each arrival is ([`Workload::assign`]) depends on the seed
//! alone, never on timing, so every balancer gets the same mix of first and later turns. A
//! user cannot answer a reply before reading it: a turn whose previous turn is still in
//! progress is sent as soon as that reply arrives (the runner waits; [`Workload::request`]
//! builds the body at that moment from the history so far). A turn whose previous turn failed
//! restarts its conversation from the system prompt (counted as restarted).

/// splitmix64: a small, fast, well-mixed generator (Steele, Lea and Flood), enough for
/// arrival gaps and filler words.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose sequence depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Mixes several numbers into one seed (each step a splitmix64 round).
pub fn mix(parts: &[u64]) -> u64 {
    let mut h = 0x5157_4954_4348_5944u64; // "SWITCHYD"
    for &p in parts {
        h = SplitMix64::new(h ^ p).next_u64();
    }
    h
}

/// How arrival times are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalMode {
    /// Exponential gaps (a Poisson process), seeded.
    Poisson,
    /// Equal gaps of `1 / rate`.
    Fixed,
}

/// The arrival times, in seconds from the start, of an open-loop load at `rate` per second.
#[derive(Debug, Clone)]
pub struct Timetable {
    rng: SplitMix64,
    mode: ArrivalMode,
    rate: f64,
    next: f64,
}

impl Timetable {
    /// A timetable at `rate` (> 0) arrivals per second.
    pub fn new(mode: ArrivalMode, rate: f64, seed: u64) -> Self {
        let mut t = Self {
            rng: SplitMix64::new(mix(&[seed, 0x7117])),
            mode,
            rate,
            next: 0.0,
        };
        t.next = t.gap();
        t
    }

    fn gap(&mut self) -> f64 {
        match self.mode {
            ArrivalMode::Fixed => 1.0 / self.rate,
            // Inverse transform: -ln(U) / rate with U in (0, 1].
            ArrivalMode::Poisson => -(1.0 - self.rng.next_f64()).ln() / self.rate,
        }
    }
}

impl Iterator for Timetable {
    type Item = f64;

    /// The next arrival time; the sequence never ends (the caller stops at its horizon).
    fn next(&mut self) -> Option<f64> {
        let t = self.next;
        self.next += self.gap();
        Some(t)
    }
}

/// The shape of the conversations.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Seeds every text and the arrival gaps.
    pub seed: u64,
    /// The `model` field of every request.
    pub model: String,
    /// Conversations in progress side by side (lanes), at least 1.
    pub conversations: u32,
    /// Turns per conversation, at least 1.
    pub turns: u32,
    /// Conversations sharing one system prompt; 0: each its own.
    pub groups: u32,
    /// Words in a system prompt.
    pub system_prompt_tokens: u32,
    /// Words in a user message.
    pub user_tokens: u32,
    /// `max_tokens` of every request.
    pub max_tokens: u32,
}

/// Filler words; each is one token for the mock engine (a whitespace-separated word).
const WORDS: [&str; 48] = [
    "apple", "river", "stone", "cloud", "light", "north", "south", "amber", "green", "quiet",
    "train", "track", "wagon", "depot", "signal", "bridge", "valley", "harbor", "meadow", "forest",
    "copper", "silver", "garden", "window", "letter", "number", "circle", "square", "ladder",
    "morning", "evening", "winter", "summer", "autumn", "spring", "market", "island", "castle",
    "planet", "rocket", "pencil", "paper", "table", "chair", "lamp", "clock", "mirror", "basket",
];

/// `n` words drawn with `rng`, space-separated.
fn words(rng: &mut SplitMix64, n: u32) -> String {
    let mut out = String::with_capacity(n as usize * 7);
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    out
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: &'static str,
    /// The text.
    pub content: String,
}

/// One lane: the conversations it runs, one turn at a time.
#[derive(Debug, Clone, Default)]
struct Lane {
    /// Conversations assigned to this lane so far.
    started: u64,
    /// The conversation turns are being assigned to, and turns assigned in it.
    assigning: u64,
    assigned_turns: u32,
    /// Requests assigned to this lane so far (the next one's sequence number).
    seq: u64,
    /// The conversation whose history `messages` holds, and the turns sent in it.
    conversation: u64,
    sent_turns: u32,
    messages: Vec<Message>,
    /// The last turn sent failed: the history lacks its reply.
    broken: bool,
}

/// Which turn of which conversation an arrival is, decided when it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// The lane.
    pub lane: usize,
    /// Its place among the lane's requests (0-based): it is sent after requests `0..seq` of
    /// the lane have finished.
    pub seq: u64,
    /// The conversation's number (sent as `x-conversation-id`).
    pub conversation: u64,
    /// The turn (1-based) within its conversation.
    pub turn: u32,
}

/// A request ready to send: its body, and what to report back with [`Workload::complete`].
#[derive(Debug, Clone)]
pub struct Planned {
    /// The JSON body.
    pub body: Vec<u8>,
    /// The conversation's number.
    pub conversation: u64,
    /// The turn sent (1 when the conversation restarted after a failed turn).
    pub turn: u32,
    lane: usize,
}

/// Counts of what the workload did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkloadCounts {
    /// Conversations started.
    pub conversations_started: u64,
    /// Conversations whose last turn got its reply.
    pub conversations_completed: u64,
    /// Turns sent as a new first turn because their conversation's previous turn failed.
    pub conversations_restarted: u64,
}

/// The conversation state of all lanes.
#[derive(Debug)]
pub struct Workload {
    cfg: WorkloadConfig,
    lanes: Vec<Lane>,
    /// Draws the lane of each arrival.
    rng: SplitMix64,
    counts: WorkloadCounts,
}

impl Workload {
    /// Lanes are created idle; nothing is generated until the first arrival.
    pub fn new(cfg: WorkloadConfig) -> Self {
        let lanes = vec![Lane::default(); cfg.conversations.max(1) as usize];
        Self {
            rng: SplitMix64::new(mix(&[cfg.seed, 3])),
            cfg,
            lanes,
            counts: WorkloadCounts::default(),
        }
    }

    /// The number of lanes.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// What the workload has done so far.
    pub fn counts(&self) -> WorkloadCounts {
        self.counts
    }

    /// The system prompt of conversation `conversation`.
    fn system_prompt(&self, conversation: u64) -> String {
        let owner = match self.cfg.groups {
            0 => conversation,
            g => conversation % u64::from(g),
        };
        let kind = if self.cfg.groups == 0 {
            "conversation"
        } else {
            "group"
        };
        let mut rng = SplitMix64::new(mix(&[self.cfg.seed, 1, owner]));
        format!(
            "You are the assistant of {kind} {owner}. {}",
            words(&mut rng, self.cfg.system_prompt_tokens)
        )
    }

    fn user_message(&self, conversation: u64, turn: u32) -> String {
        let mut rng = SplitMix64::new(mix(&[self.cfg.seed, 2, conversation, u64::from(turn)]));
        format!(
            "Question {turn} of conversation {conversation}: {}",
            words(&mut rng, self.cfg.user_tokens)
        )
    }

    /// Decides what the next arrival is: the next turn of a lane drawn at random (a new
    /// conversation when the lane's current one has had all its turns).
    pub fn assign(&mut self) -> Assignment {
        let n = self.lanes.len();
        let lane = self.rng.below(n as u64) as usize;
        let l = &mut self.lanes[lane];
        if l.started == 0 || l.assigned_turns >= self.cfg.turns {
            l.assigning = lane as u64 + n as u64 * l.started;
            l.started += 1;
            l.assigned_turns = 0;
            self.counts.conversations_started += 1;
        }
        l.assigned_turns += 1;
        let a = Assignment {
            lane,
            seq: l.seq,
            conversation: l.assigning,
            turn: l.assigned_turns,
        };
        l.seq += 1;
        a
    }

    /// The request of assignment `a`, built from its conversation's history. Call it once the
    /// lane's earlier requests have finished ([`complete`](Self::complete)), so the history
    /// holds their replies.
    pub fn request(&mut self, a: &Assignment) -> Planned {
        let Some(l) = self.lanes.get(a.lane) else {
            return Planned {
                body: Vec::new(),
                conversation: a.conversation,
                turn: a.turn,
                lane: a.lane,
            };
        };
        if a.turn == 1 || l.broken || l.conversation != a.conversation {
            if a.turn > 1 {
                self.counts.conversations_restarted += 1;
            }
            let system = self.system_prompt(a.conversation);
            let l = &mut self.lanes[a.lane];
            l.conversation = a.conversation;
            l.sent_turns = 0;
            l.broken = false;
            l.messages.clear();
            l.messages.push(Message {
                role: "system",
                content: system,
            });
        }
        let turn = self.lanes[a.lane].sent_turns + 1;
        let user = self.user_message(a.conversation, turn);
        let l = &mut self.lanes[a.lane];
        l.sent_turns = turn;
        l.messages.push(Message {
            role: "user",
            content: user,
        });
        let body = serde_json::json!({
            "model": self.cfg.model,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": self.cfg.max_tokens,
            "messages": l.messages,
        });
        Planned {
            // Serializing a `Value` cannot fail.
            body: serde_json::to_vec(&body).unwrap_or_default(),
            conversation: a.conversation,
            turn,
            lane: a.lane,
        }
    }

    /// Reports the reply of request `p`: `Some(text)` appends it to the conversation's
    /// history; `None` (the turn failed) makes the conversation's next turn restart it.
    pub fn complete(&mut self, p: &Planned, reply: Option<String>) {
        let turns = self.cfg.turns;
        let Some(l) = self.lanes.get_mut(p.lane) else {
            return;
        };
        if l.conversation != p.conversation || l.sent_turns != p.turn {
            return; // not the lane's latest request: out of order, ignored
        }
        match reply {
            Some(text) => {
                l.messages.push(Message {
                    role: "assistant",
                    content: text,
                });
                if p.turn >= turns {
                    self.counts.conversations_completed += 1;
                }
            }
            None => l.broken = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> WorkloadConfig {
        WorkloadConfig {
            seed: 7,
            model: "m".into(),
            conversations: 2,
            turns: 3,
            groups: 0,
            system_prompt_tokens: 20,
            user_tokens: 5,
            max_tokens: 8,
        }
    }

    fn messages(p: &Planned) -> Vec<(String, String)> {
        let v: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["role"].as_str().unwrap().to_string(),
                    m["content"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn splitmix_is_seeded_and_uniform_enough() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(1);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut r = SplitMix64::new(1);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        let mut r = SplitMix64::new(2);
        let mean = (0..10_000).map(|_| r.next_f64()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn timetables_keep_the_rate() {
        let fixed: Vec<f64> = Timetable::new(ArrivalMode::Fixed, 4.0, 1).take(4).collect();
        assert_eq!(fixed, vec![0.25, 0.5, 0.75, 1.0]);
        let n = Timetable::new(ArrivalMode::Poisson, 50.0, 3)
            .take_while(|t| *t < 100.0)
            .count();
        assert!((4_500..5_500).contains(&n), "{n} arrivals in 100 s at 50/s");
        let a: Vec<f64> = Timetable::new(ArrivalMode::Poisson, 5.0, 9)
            .take(5)
            .collect();
        let b: Vec<f64> = Timetable::new(ArrivalMode::Poisson, 5.0, 9)
            .take(5)
            .collect();
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
    }

    /// Sends every arrival at once, replying `reply(i)`.
    fn drive(w: &mut Workload, n: usize, reply: impl Fn(usize) -> Option<String>) -> Vec<Planned> {
        (0..n)
            .map(|i| {
                let a = w.assign();
                let p = w.request(&a);
                w.complete(&p, reply(i));
                p
            })
            .collect()
    }

    #[test]
    fn turns_extend_the_previous_prompt() {
        let mut w = Workload::new(WorkloadConfig {
            conversations: 1,
            ..cfg()
        });
        let a = w.assign();
        assert_eq!((a.lane, a.seq, a.turn), (0, 0, 1));
        let first = w.request(&a);
        assert_eq!(first.turn, 1);
        let m1 = messages(&first);
        assert_eq!(m1.len(), 2);
        assert_eq!(m1[0].0, "system");
        assert_eq!(m1[0].1.split_whitespace().count(), 7 + 20);
        assert_eq!(m1[1].0, "user");
        w.complete(&first, Some("reply one".into()));
        let a = w.assign();
        let second = w.request(&a);
        assert_eq!(second.turn, 2);
        let m2 = messages(&second);
        assert_eq!(m2[..2], m1[..]);
        assert_eq!(m2[2], ("assistant".into(), "reply one".into()));
        assert_eq!(m2[3].0, "user");
        assert_ne!(m2[3], m1[1]);
        let v: serde_json::Value = serde_json::from_slice(&second.body).unwrap();
        assert_eq!(v["stream"], true);
        assert_eq!(v["max_tokens"], 8);
        assert_eq!(v["model"], "m");
    }

    #[test]
    fn assignments_depend_on_the_seed_alone() {
        // The turn mix does not depend on when (or whether) replies come back.
        let mut quick = Workload::new(cfg());
        let mut stalled = Workload::new(cfg());
        for _ in 0..30 {
            let a = quick.assign();
            let p = quick.request(&a);
            quick.complete(&p, Some("r".into()));
            assert_eq!(stalled.assign(), a);
        }
        // Lanes are drawn at random: all used, and not in a fixed rotation.
        let mut w = Workload::new(WorkloadConfig {
            conversations: 4,
            ..cfg()
        });
        let seq: Vec<usize> = (0..40).map(|_| w.assign().lane).collect();
        let used: std::collections::BTreeSet<_> = seq.iter().collect();
        assert_eq!(used.len(), 4);
        assert!(seq.windows(2).any(|p| p[0] == p[1]), "{seq:?}");
        // Each lane's requests are numbered in order.
        let mut w = Workload::new(cfg());
        let mut next = [0u64; 2];
        for _ in 0..10 {
            let a = w.assign();
            assert_eq!(a.seq, next[a.lane]);
            next[a.lane] += 1;
        }
    }

    #[test]
    fn same_seed_same_requests() {
        let run = || {
            let mut w = Workload::new(cfg());
            drive(&mut w, 12, |i| Some(format!("r{i}")))
                .into_iter()
                .map(|p| p.body)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn conversations_end_after_their_turns_and_groups_share_prompts() {
        let mut w = Workload::new(WorkloadConfig {
            conversations: 1,
            groups: 2,
            ..cfg()
        });
        let sent = drive(&mut w, 9, |_| Some("ok".into()));
        let mut systems = Vec::new();
        for (i, p) in sent.iter().enumerate() {
            assert_eq!(p.turn, (i % 3) as u32 + 1);
            if p.turn == 1 {
                systems.push(messages(p)[0].1.clone());
            }
        }
        // Conversations 0, 1, 2 in groups 0, 1, 0.
        assert_eq!(systems.len(), 3);
        assert_eq!(systems[0], systems[2]);
        assert_ne!(systems[0], systems[1]);
        let c = w.counts();
        assert_eq!(c.conversations_started, 3);
        assert_eq!(c.conversations_completed, 3);
        assert_eq!(c.conversations_restarted, 0);
        // Different conversations have different system prompts.
        let mut w = Workload::new(cfg());
        let firsts: Vec<Planned> = drive(&mut w, 6, |_| Some("r".into()))
            .into_iter()
            .filter(|p| p.turn == 1)
            .collect();
        assert!(firsts.len() >= 2);
        assert_ne!(firsts[0].conversation, firsts[1].conversation);
        assert_ne!(messages(&firsts[0])[0], messages(&firsts[1])[0]);
    }

    #[test]
    fn a_failed_turn_restarts_its_conversation() {
        let mut w = Workload::new(WorkloadConfig {
            conversations: 1,
            ..cfg()
        });
        let a = w.assign();
        let first = w.request(&a);
        w.complete(&first, Some("fine".into()));
        let a = w.assign();
        let second = w.request(&a);
        assert_eq!(second.turn, 2);
        w.complete(&second, None);
        let a = w.assign();
        assert_eq!(a.turn, 3);
        let third = w.request(&a);
        assert_eq!(third.turn, 1); // sent as a fresh start: the history lacks a reply
        assert_eq!(third.conversation, first.conversation);
        assert_eq!(messages(&third).len(), 2);
        assert_eq!(w.counts().conversations_restarted, 1);
        // A stale completion is ignored.
        w.complete(&second, Some("late".into()));
        w.complete(&third, Some("ok".into()));
        let a = w.assign();
        let fourth = w.request(&a);
        assert!(!messages(&fourth).iter().any(|(_, t)| t == "late"));
        assert_eq!(fourth.turn, 1); // turn 4 of 3 assigned: a new conversation
        assert_ne!(fourth.conversation, first.conversation);
    }
}
