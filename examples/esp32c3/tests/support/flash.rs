//! A NOR flash in RAM with the chip's geometry (4 KiB pages, 4-byte words), whose power can be
//! cut at any write: the host tests' stand-in for the ESP32-C3's SPI flash.

use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// The chip's erase unit.
pub const PAGE: usize = 4096;
const WORD: usize = 4;

/// What the flash refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashError {
    /// Outside the flash, or not on a word boundary.
    OutOfBounds,
    /// The power was cut: this operation was torn, and nothing more happens until a boot.
    PowerLost,
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            Self::PowerLost => NorFlashErrorKind::Other,
        }
    }
}

/// Erased bytes read `0xFF`; a write can only clear bits (as NOR flash, and as sequential-
/// storage's removal relies on); an erase sets a whole page back to `0xFF`.
#[derive(Debug, Clone)]
pub struct SimulatedFlash {
    bytes: Vec<u8>,
    /// Writes and erases left before the power goes; `None`: it never does.
    budget: Option<usize>,
    /// Writes and erases done (a page erased counts one).
    pub steps: usize,
    /// Pages erased.
    pub erases: usize,
    dead: bool,
}

impl SimulatedFlash {
    /// `pages` erased pages.
    pub fn new(pages: usize) -> Self {
        Self {
            bytes: vec![0xFF; pages * PAGE],
            budget: None,
            steps: 0,
            erases: 0,
            dead: false,
        }
    }

    /// Cuts the power during the write or erase after `steps` more: that one is torn (half of
    /// its words written and the next one garbled, or half of the page erased).
    pub fn cut_after(&mut self, steps: usize) {
        self.budget = Some(steps);
    }

    /// The power comes back: a boot.
    pub fn boot(&mut self) {
        self.budget = None;
        self.dead = false;
    }

    /// Whether the power was cut.
    pub fn lost_power(&self) -> bool {
        self.dead
    }

    /// Counts one step; true when the power goes during it.
    fn cut_now(&mut self) -> Result<bool, FlashError> {
        if self.dead {
            return Err(FlashError::PowerLost);
        }
        self.steps += 1;
        match &mut self.budget {
            Some(0) => {
                self.dead = true;
                Ok(true)
            }
            Some(left) => {
                *left -= 1;
                Ok(false)
            }
            None => Ok(false),
        }
    }

    fn range(&self, offset: u32, len: usize) -> Result<core::ops::Range<usize>, FlashError> {
        let start = offset as usize;
        let end = start.checked_add(len).ok_or(FlashError::OutOfBounds)?;
        if end > self.bytes.len() {
            return Err(FlashError::OutOfBounds);
        }
        Ok(start..end)
    }
}

/// Whether both `a` and `b` are multiples of `unit`.
fn aligned(a: usize, b: usize, unit: usize) -> bool {
    a.is_multiple_of(unit) && b.is_multiple_of(unit)
}

impl ErrorType for SimulatedFlash {
    type Error = FlashError;
}

impl ReadNorFlash for SimulatedFlash {
    const READ_SIZE: usize = WORD;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        if self.dead {
            return Err(FlashError::PowerLost);
        }
        if !aligned(offset as usize, bytes.len(), WORD) {
            return Err(FlashError::OutOfBounds);
        }
        let range = self.range(offset, bytes.len())?;
        bytes.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.bytes.len()
    }
}

impl NorFlash for SimulatedFlash {
    const WRITE_SIZE: usize = WORD;
    const ERASE_SIZE: usize = PAGE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        if !aligned(from as usize, to as usize, PAGE) || to < from {
            return Err(FlashError::OutOfBounds);
        }
        self.range(from, (to - from) as usize)?;
        for page in (from as usize..to as usize).step_by(PAGE) {
            if self.cut_now()? {
                self.bytes[page..page + PAGE / 2].fill(0xFF);
                return Err(FlashError::PowerLost);
            }
            self.bytes[page..page + PAGE].fill(0xFF);
            self.erases += 1;
        }
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        if !aligned(offset as usize, bytes.len(), WORD) {
            return Err(FlashError::OutOfBounds);
        }
        let range = self.range(offset, bytes.len())?;
        let torn = self.cut_now()?;
        let words = bytes.len() / WORD;
        let written = if torn { words / 2 } else { words };
        for (at, byte) in range.clone().zip(bytes).take(written * WORD) {
            self.bytes[at] &= byte;
        }
        if torn {
            // The word being programmed when the power went: some of its bits.
            let start = range.start + written * WORD;
            for (at, byte) in (start..start + WORD).zip(&bytes[written * WORD..]) {
                self.bytes[at] &= byte | 0x5A;
            }
            return Err(FlashError::PowerLost);
        }
        Ok(())
    }
}

impl MultiwriteNorFlash for SimulatedFlash {}
