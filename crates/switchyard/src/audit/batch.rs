//! A reactor thread's request lines, their JSON text written one after the other into one
//! buffer, waiting to be handed to the writer together (at most [`super::BATCH`] lines).

use super::json::TimeText;
use super::line::{write_request, Ending, RequestLine};

/// Request lines as text (each ending in a newline), and how many there are.
#[derive(Debug, Default)]
pub struct Batch {
    text: Vec<u8>,
    lines: u64,
    /// The thread's current second as text (kept across batches).
    times: TimeText,
}

impl Batch {
    /// Writes `l`'s line at the end.
    pub fn add(&mut self, l: &RequestLine, end: Ending<'_>) {
        write_request(&mut self.text, &mut self.times, l, end);
        self.lines += 1;
    }

    /// How many lines it holds.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Whether it holds [`super::BATCH`] lines, and is to be sent.
    pub fn full(&self) -> bool {
        self.lines >= super::BATCH as u64
    }

    /// The lines' text.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Takes the lines, leaving an empty batch with room for as many bytes (one allocation
    /// per batch, none per line).
    pub fn take(&mut self) -> Batch {
        let room = Vec::with_capacity(self.text.capacity());
        Batch {
            text: std::mem::replace(&mut self.text, room),
            lines: std::mem::take(&mut self.lines),
            times: TimeText::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_and_taken_together() {
        let mut b = Batch::default();
        for _ in 0..super::super::BATCH {
            assert!(!b.full());
            b.add(&RequestLine::default(), Ending::default());
        }
        assert!(b.full());
        let taken = b.take();
        assert_eq!(taken.lines(), super::super::BATCH as u64);
        assert_eq!(
            taken.text().iter().filter(|&&c| c == b'\n').count(),
            super::super::BATCH
        );
        assert_eq!(b.lines(), 0);
        assert!(b.text().is_empty() && !b.full());
    }
}
