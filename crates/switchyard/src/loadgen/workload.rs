//! What the load generator sends and when: a seeded arrival timetable and multi-turn
//! conversations whose turns share prefixes.
//!
//! **Timetable.** Arrivals are open-loop: their times are drawn before anything is sent and
//! never wait for a response. `poisson` spaces them by exponential gaps of mean `1 / rate`
//! (seeded), `fixed` by exactly `1 / rate`.
//!
//! **Conversations.** The workload runs `conversations` lanes side by side; each lane runs one
//! conversation of `turns` turns after another. Each arrival goes to a lane drawn at random
//! (seeded), so consecutive turns of a conversation are on average `lanes / rate` seconds
//! apart, with no fixed stride (with arrival `i` on lane `i mod lanes`, a round-robin balancer
//! over a number of engines dividing `lanes` would send every turn of a conversation to the
//! same engine by coincidence). A conversation opens with a system prompt of
//! `system_prompt_tokens` words (one per conversation, or one per group when `groups > 0`, so
//! several conversations share it), and each turn resends every earlier message, the
//! assistant's replies as received included, plus a new user message of `user_tokens` words:
//! each turn's prompt begins with the whole previous prompt, which a prefix cache can reuse.
//!
//! A user does not send the next turn before the previous reply arrived: when the drawn lane
//! is still waiting for its reply, the arrival goes to the next idle lane; when every lane is
//! busy, the drawn lane's conversation is cut short and a new one starts there (counted in the
//! report: size `conversations` well above `rate x latency` to keep this rare). Everything
//! sent is a function of the seed and the replies received, and the order too as long as no
//! drawn lane is found busy.

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

/// One lane: the conversation it is running and whether a turn is awaiting its reply.
#[derive(Debug, Clone, Default)]
struct Lane {
    /// Conversations this lane has started.
    started: u64,
    /// The current conversation's number (unique over all lanes).
    conversation: u64,
    /// Turns sent in the current conversation.
    turn: u32,
    messages: Vec<Message>,
    /// A turn was sent and its reply has not come back.
    busy: bool,
    /// Bumped at every new conversation, so a late reply of a conversation cut short is
    /// not appended to the next one.
    generation: u64,
}

/// A request to send: its body and what to report back with [`Workload::complete`].
#[derive(Debug, Clone)]
pub struct Planned {
    /// The JSON body.
    pub body: Vec<u8>,
    /// Which lane and conversation it belongs to.
    pub ticket: Ticket,
    /// The turn (1-based) within its conversation.
    pub turn: u32,
    /// The conversation's number (sent as `x-conversation-id`).
    pub conversation: u64,
}

/// Identifies the turn a reply belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    lane: usize,
    generation: u64,
}

/// Counts of what the workload did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkloadCounts {
    /// Conversations started.
    pub conversations_started: u64,
    /// Conversations that ran all their turns.
    pub conversations_completed: u64,
    /// Conversations ended early: every lane was busy, or a turn failed.
    pub conversations_cut_short: u64,
    /// Arrivals moved to another lane because theirs was waiting for a reply.
    pub lane_moves: u64,
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

    fn start_conversation(&mut self, lane: usize) {
        let lanes = self.lanes.len() as u64;
        let l = &mut self.lanes[lane];
        if l.turn > 0 && l.turn < self.cfg.turns {
            self.counts.conversations_cut_short += 1;
        }
        l.conversation = lane as u64 + lanes * l.started;
        l.started += 1;
        l.turn = 0;
        l.busy = false;
        l.generation += 1;
        l.messages.clear();
        let system = self.system_prompt(self.lanes[lane].conversation);
        self.lanes[lane].messages.push(Message {
            role: "system",
            content: system,
        });
        self.counts.conversations_started += 1;
    }

    /// The request for the next arrival, marking its lane busy.
    pub fn next_request(&mut self) -> Planned {
        let n = self.lanes.len();
        let home = self.rng.below(n as u64) as usize;
        let lane = (0..n)
            .map(|k| (home + k) % n)
            .find(|&l| !self.lanes[l].busy)
            .unwrap_or(home);
        if lane != home {
            self.counts.lane_moves += 1;
        }
        let l = &self.lanes[lane];
        if l.busy || l.messages.is_empty() || l.turn >= self.cfg.turns {
            self.start_conversation(lane);
        }
        let conversation = self.lanes[lane].conversation;
        let turn = self.lanes[lane].turn + 1;
        let user = self.user_message(conversation, turn);
        let l = &mut self.lanes[lane];
        l.turn = turn;
        l.busy = true;
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
            ticket: Ticket {
                lane,
                generation: l.generation,
            },
            turn,
            conversation,
        }
    }

    /// Reports the reply of the turn `ticket` sent: `Some(text)` appends it to the
    /// conversation, `None` (the turn failed) ends the conversation. A reply for a
    /// conversation already cut short is ignored.
    pub fn complete(&mut self, ticket: Ticket, reply: Option<String>) {
        let Some(l) = self.lanes.get_mut(ticket.lane) else {
            return;
        };
        if l.generation != ticket.generation || !l.busy {
            return;
        }
        l.busy = false;
        match reply {
            Some(text) => {
                l.messages.push(Message {
                    role: "assistant",
                    content: text,
                });
                if l.turn >= self.cfg.turns {
                    self.counts.conversations_completed += 1;
                }
            }
            None => {
                if l.turn < self.cfg.turns {
                    self.counts.conversations_cut_short += 1;
                }
                // The next arrival on this lane starts afresh.
                l.turn = self.cfg.turns;
                l.messages.clear();
            }
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

    #[test]
    fn turns_extend_the_previous_prompt() {
        let mut w = Workload::new(WorkloadConfig {
            conversations: 1,
            ..cfg()
        });
        let first = w.next_request();
        assert_eq!(first.turn, 1);
        let m1 = messages(&first);
        assert_eq!(m1.len(), 2);
        assert_eq!(m1[0].0, "system");
        assert_eq!(m1[0].1.split_whitespace().count(), 7 + 20);
        assert_eq!(m1[1].0, "user");
        w.complete(first.ticket, Some("reply one".into()));
        let second = w.next_request();
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
    fn lanes_are_drawn_at_random_and_hold_their_own_conversations() {
        let mut w = Workload::new(WorkloadConfig {
            conversations: 4,
            ..cfg()
        });
        let mut lanes = std::collections::BTreeMap::new();
        for _ in 0..40 {
            let p = w.next_request();
            *lanes.entry(p.ticket.lane).or_insert(0) += 1;
            w.complete(p.ticket, Some("r".into()));
        }
        assert_eq!(lanes.len(), 4, "{lanes:?}");
        // Not a fixed rotation: some lane is drawn twice in a row.
        let mut w = Workload::new(cfg());
        let seq: Vec<usize> = (0..20)
            .map(|_| {
                let p = w.next_request();
                w.complete(p.ticket, Some("r".into()));
                p.ticket.lane
            })
            .collect();
        assert!(seq.windows(2).any(|p| p[0] == p[1]), "{seq:?}");
        // Two conversations in progress have different system prompts.
        let mut w = Workload::new(cfg());
        let (a, b) = (w.next_request(), w.next_request());
        assert_ne!(a.ticket.lane, b.ticket.lane);
        assert_ne!(a.conversation, b.conversation);
        assert_ne!(messages(&a)[0], messages(&b)[0]);
    }

    #[test]
    fn same_seed_same_requests() {
        let run = || {
            let mut w = Workload::new(cfg());
            (0..12)
                .map(|i| {
                    let p = w.next_request();
                    w.complete(p.ticket, Some(format!("r{i}")));
                    p.body
                })
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
        let mut systems = Vec::new();
        for i in 0..9 {
            let p = w.next_request();
            assert_eq!(p.turn, (i % 3) as u32 + 1);
            if p.turn == 1 {
                systems.push(messages(&p)[0].1.clone());
            }
            w.complete(p.ticket, Some("ok".into()));
        }
        // Conversations 0, 1, 2 in groups 0, 1, 0.
        assert_eq!(systems.len(), 3);
        assert_eq!(systems[0], systems[2]);
        assert_ne!(systems[0], systems[1]);
        let c = w.counts();
        assert_eq!(c.conversations_started, 3);
        assert_eq!(c.conversations_completed, 3);
        assert_eq!(c.conversations_cut_short, 0);
    }

    #[test]
    fn busy_lanes_move_arrivals_or_cut_conversations_short() {
        let mut w = Workload::new(WorkloadConfig {
            conversations: 1,
            ..cfg()
        });
        let a = w.next_request(); // the only lane is busy
        let b = w.next_request(); // so its conversation is cut short
        assert_eq!(b.turn, 1);
        assert_eq!(w.counts().conversations_cut_short, 1);
        // The late reply of the cut conversation is ignored.
        w.complete(a.ticket, Some("late".into()));
        w.complete(b.ticket, Some("fresh".into()));
        let c = w.next_request();
        assert_eq!(c.turn, 2);
        let texts: Vec<String> = messages(&c).into_iter().map(|(_, t)| t).collect();
        assert!(texts.contains(&"fresh".to_string()));
        assert!(!texts.contains(&"late".to_string()));
        // A failed turn ends its conversation.
        w.complete(c.ticket, None);
        assert_eq!(w.counts().conversations_cut_short, 2);
        assert_eq!(w.next_request().turn, 1);

        // With an idle lane, an arrival drawn to a busy one moves there instead.
        let mut w = Workload::new(WorkloadConfig {
            conversations: 2,
            ..cfg()
        });
        let (a, b) = (w.next_request(), w.next_request());
        assert_ne!(a.ticket.lane, b.ticket.lane);
        assert_eq!((a.turn, b.turn), (1, 1));
        assert!(w.counts().lane_moves <= 1);
        assert_eq!(w.counts().conversations_cut_short, 0);
    }
}
