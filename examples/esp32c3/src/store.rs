//! What survives a reboot: the engine's outbox, the responses to its recent commands, and the
//! config in force, in flash.
//!
//! The MQTT loop writes every [`Persist`] change the engine reports through a [`Store`] before
//! it sends what the change concerns, and the firmware hands [`Store::load`]'s [`Saved`] to
//! [`Device::restore`](dese_device::Device::restore) at boot. [`FlashStore`] keeps them in any
//! NOR flash (the chip's `dese` partition; a simulated flash in the host tests) with
//! [`sequential_storage`]: CRC-checked items, pages used in turn for wear levelling, and a
//! write cut by a power loss leaves the items written before it intact (the host tests cut the
//! simulated flash at every write). [`Volatile`] keeps nothing, for a device without flash to
//! spare.
//!
//! The flash range is split in two. The first part, all pages but a quarter (at least two), is
//! a queue of the outbox, oldest first: one item per message, `[id: u64 LE][kind: u8][payload]`,
//! popped when the engine reports it removed. The rest is a map: key 0 holds the config (as an
//! encoded config message), keys 1 to `answered_capacity` the recent answers in turn,
//! `[sequence: u32 LE][id length: u8][command id][response]`.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use dese_device::{MessageId, Persist, Saved, SavedMessage, Settings};
use dese_protocol::{
    CommandId, Config, Decoder, DeviceConfig, DeviceId, Message, MessageKind, OrgId, Timestamp,
    Topic, encode,
};
use embedded_storage_async::nor_flash::MultiwriteNorFlash;
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::map::{MapConfig, MapStorage};
use sequential_storage::queue::{QueueConfig, QueueStorage};

/// No cache: every operation reads the page states from flash (a few hundred bytes), so a
/// store needs no RAM beyond its buffer and cannot disagree with the flash after a power cut.
type NoCache<K = ()> = Cache<Uncached, Uncached, Uncached, K>;

/// Where the engine's reboot-safe state goes.
#[allow(async_fn_in_trait)] // implemented and called within one executor
pub trait Store {
    /// Why a change could not be saved, or the state not read.
    type Error: fmt::Display;

    /// Reads back what was saved, for [`Device::restore`](dese_device::Device::restore).
    async fn load(&mut self) -> Result<Saved, Self::Error>;

    /// Saves one change; when it returns, the change survives a power loss.
    async fn save(&mut self, change: &Persist) -> Result<(), Self::Error>;
}

/// Keeps nothing: the state lives in RAM only, as without a store.
#[derive(Debug, Clone, Copy, Default)]
pub struct Volatile;

impl Store for Volatile {
    type Error = core::convert::Infallible;

    async fn load(&mut self) -> Result<Saved, Self::Error> {
        Ok(Saved::default())
    }

    async fn save(&mut self, _change: &Persist) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// No store (`None`) keeps nothing, as [`Volatile`]: for a firmware whose flash has no
/// partition for it.
impl<S: Store> Store for Option<S> {
    type Error = S::Error;

    async fn load(&mut self) -> Result<Saved, Self::Error> {
        match self {
            Some(store) => store.load().await,
            None => Ok(Saved::default()),
        }
    }

    async fn save(&mut self, change: &Persist) -> Result<(), Self::Error> {
        match self {
            Some(store) => store.save(change).await,
            None => Ok(()),
        }
    }
}

/// A blocking NOR flash (`embedded-storage`, as esp-storage and the partition regions of
/// esp-bootloader-esp-idf give it) behind the async traits sequential-storage takes: each
/// operation runs to its end when called (on the ESP32-C3 the CPU waits with the flash cache
/// off: tens of microseconds a word written, tens of milliseconds a page erased).
#[derive(Debug)]
pub struct Blocking<F>(pub F);

impl<F: embedded_storage::nor_flash::ErrorType> embedded_storage_async::nor_flash::ErrorType
    for Blocking<F>
{
    type Error = F::Error;
}

impl<F: embedded_storage::nor_flash::ReadNorFlash> embedded_storage_async::nor_flash::ReadNorFlash
    for Blocking<F>
{
    const READ_SIZE: usize = F::READ_SIZE;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), F::Error> {
        self.0.read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl<F: embedded_storage::nor_flash::NorFlash> embedded_storage_async::nor_flash::NorFlash
    for Blocking<F>
{
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), F::Error> {
        self.0.erase(from, to)
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), F::Error> {
        self.0.write(offset, bytes)
    }
}

impl<F: embedded_storage::nor_flash::MultiwriteNorFlash> MultiwriteNorFlash for Blocking<F> {}

/// Why [`FlashStore`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError<E> {
    /// The flash range cannot hold the layout: too few pages, or not on page boundaries.
    Layout(String),
    /// The flash, or sequential-storage above it, failed (a power cut mid-write is repaired
    /// at the next operation, not reported).
    Flash(sequential_storage::Error<E>),
    /// One item larger than a flash page: this message or answer is not kept across a reboot.
    TooLarge {
        /// What it was.
        what: &'static str,
        /// Its size in bytes.
        len: usize,
    },
    /// A part of the store is full: the outbox, of messages the broker has not acknowledged,
    /// or the memory of answers and config. This change is not kept across a reboot.
    Full {
        /// Which part.
        part: &'static str,
    },
    /// A change this store cannot keep: of a kind it does not know (from a newer engine), or
    /// a config that does not encode.
    Unsupported,
}

impl<E: fmt::Debug> fmt::Display for StoreError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Layout(why) => write!(f, "the flash range cannot hold the store: {why}"),
            Self::Flash(error) => write!(f, "flash storage failed: {error:?}"),
            Self::TooLarge { what, len } => write!(
                f,
                "a {len}-byte {what} is larger than a flash page: it is not kept across a reboot"
            ),
            Self::Full { part } => write!(
                f,
                "the saved {part} is full: this change is not kept across a reboot"
            ),
            Self::Unsupported => f.write_str("a change this store cannot keep across a reboot"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for StoreError<E> {}

impl<E> From<sequential_storage::Error<E>> for StoreError<E> {
    fn from(error: sequential_storage::Error<E>) -> Self {
        match error {
            sequential_storage::Error::FullStorage => Self::Full { part: "outbox" },
            other => Self::Flash(other),
        }
    }
}

/// The map key of the config.
const CONFIG_KEY: u16 = 0;

/// The engine's state in a NOR flash range.
#[derive(Debug, Clone)]
pub struct FlashStore<F> {
    flash: F,
    outbox: Range<u32>,
    memory: Range<u32>,
    org: OrgId,
    device: DeviceId,
    answered_capacity: u16,
    /// The sequence number of the next answer, and its slot (1 to `answered_capacity`).
    next_answer: (u32, u16),
    buf: Vec<u8>,
}

impl<F: MultiwriteNorFlash> FlashStore<F> {
    /// A store in `range` of `flash` (offsets in the flash's own addresses, on page
    /// boundaries, at least four pages), for the device of `settings` and its
    /// `answered_capacity`. Nothing is read or written until [`Store::load`].
    pub fn new(
        flash: F,
        range: Range<u32>,
        settings: &Settings,
    ) -> Result<Self, StoreError<F::Error>> {
        let page = F::ERASE_SIZE as u32;
        if !range.start.is_multiple_of(page)
            || !range.end.is_multiple_of(page)
            || range.end <= range.start
        {
            return Err(StoreError::Layout(alloc::format!(
                "{range:?} is not whole pages of {page} bytes"
            )));
        }
        let pages = (range.end - range.start) / page;
        if pages < 4 {
            return Err(StoreError::Layout(alloc::format!(
                "{pages} pages; at least 4 are needed"
            )));
        }
        let memory_pages = (pages / 4).max(2);
        let split = range.end - memory_pages * page;
        let answered_capacity =
            u16::try_from(settings.answered_capacity.clamp(1, 1024)).unwrap_or(1024);
        let store = Self {
            flash,
            outbox: range.start..split,
            memory: split..range.end,
            org: settings.org.clone(),
            device: settings.device.clone(),
            answered_capacity,
            next_answer: (0, 1),
            buf: vec![0; F::ERASE_SIZE],
        };
        QueueConfig::<F>::try_new(store.outbox.clone())
            .map_err(|e| StoreError::Layout(alloc::format!("outbox: {e:?}")))?;
        MapConfig::<F>::try_new(store.memory.clone())
            .map_err(|e| StoreError::Layout(alloc::format!("memory: {e:?}")))?;
        Ok(store)
    }

    /// The flash, for a test to look at.
    pub fn flash(&self) -> &F {
        &self.flash
    }

    /// The flash, for a test to reach into (to cut its power).
    pub fn flash_mut(&mut self) -> &mut F {
        &mut self.flash
    }

    /// The flash back, for a test to look at (or to boot again from).
    pub fn into_flash(self) -> F {
        self.flash
    }

    /// Forgets everything: erases the whole range.
    pub async fn erase(&mut self) -> Result<(), StoreError<F::Error>> {
        self.queue().erase_all().await?;
        self.map().erase_all().await?;
        self.next_answer = (0, 1);
        Ok(())
    }

    fn queue(&mut self) -> QueueStorage<&mut F, NoCache> {
        let config = QueueConfig::try_new(self.outbox.clone())
            .unwrap_or_else(|_| unreachable!("checked in FlashStore::new"));
        QueueStorage::new(&mut self.flash, config, Cache::new_uncached())
    }

    fn topic(&self, kind: MessageKind) -> Topic {
        Topic::new(self.org.clone(), self.device.clone(), kind)
    }

    async fn push(
        &mut self,
        id: MessageId,
        kind: MessageKind,
        payload: &[u8],
    ) -> Result<(), StoreError<F::Error>> {
        let Some(code) = kind_code(kind) else {
            return Ok(()); // never saved: the engine does not report statuses
        };
        let mut item = Vec::with_capacity(9 + payload.len());
        item.extend_from_slice(&id.0.to_le_bytes());
        item.push(code);
        item.extend_from_slice(payload);
        match self.queue().push(&item, false).await {
            Err(sequential_storage::Error::ItemTooBig) => Err(StoreError::TooLarge {
                what: "message",
                len: item.len(),
            }),
            other => Ok(other?),
        }
    }

    async fn pop(&mut self, id: MessageId) -> Result<(), StoreError<F::Error>> {
        let wanted = id.0.to_le_bytes();
        let mut buf = core::mem::take(&mut self.buf);
        let result = async {
            let mut queue = self.queue();
            let mut items = queue.iter().await?;
            while let Some(item) = items.next(&mut buf).await? {
                if item.get(..8) == Some(&wanted[..]) {
                    item.pop().await?;
                    break;
                }
            }
            Ok(())
        }
        .await;
        self.buf = buf;
        result
    }

    async fn answered(
        &mut self,
        command_id: &CommandId,
        response: &[u8],
    ) -> Result<(), StoreError<F::Error>> {
        let (sequence, slot) = self.next_answer;
        let id = command_id.as_str().as_bytes();
        let mut item = Vec::with_capacity(5 + id.len() + response.len());
        item.extend_from_slice(&sequence.to_le_bytes());
        item.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        item.extend_from_slice(id);
        item.extend_from_slice(response);
        self.store_item(slot, &item, "command response").await?;
        self.next_answer = (sequence.wrapping_add(1), slot % self.answered_capacity + 1);
        Ok(())
    }

    async fn config(&mut self, config: &DeviceConfig) -> Result<(), StoreError<F::Error>> {
        let message = Message::Config(Config {
            device_id: self.device.clone(),
            config: config.clone(),
            timestamp: Timestamp::UNIX_EPOCH,
        });
        // A config the engine holds always encodes; should one not, it is not kept.
        let item = encode(&message).map_err(|_| StoreError::Unsupported)?;
        self.store_item(CONFIG_KEY, &item, "config").await
    }

    /// Stores `item` (a `what`) under `key` in the map.
    async fn store_item(
        &mut self,
        key: u16,
        item: &[u8],
        what: &'static str,
    ) -> Result<(), StoreError<F::Error>> {
        let too_large = StoreError::TooLarge {
            what,
            len: item.len(),
        };
        // The key and the item go through the page-sized buffer together.
        if item.len() + 16 > self.buf.len() {
            return Err(too_large);
        }
        let mut buf = core::mem::take(&mut self.buf);
        // The generic form: its future is `Send` (the trait-object one is not), for a host
        // application that runs the loop on a multi-threaded runtime.
        let result = self.map().store_item_generic(&mut buf, &key, &item).await;
        self.buf = buf;
        match result {
            Err(sequential_storage::Error::ItemTooBig) => Err(too_large),
            Err(sequential_storage::Error::FullStorage) => Err(StoreError::Full {
                part: "memory of answers and config",
            }),
            other => Ok(other?),
        }
    }

    async fn fetch_item(&mut self, key: u16) -> Result<Option<Vec<u8>>, StoreError<F::Error>> {
        let mut buf = core::mem::take(&mut self.buf);
        let result = self
            .map()
            .fetch_item::<&[u8]>(&mut buf, &key)
            .await
            .map(|item| item.map(<[u8]>::to_vec));
        self.buf = buf;
        Ok(result?)
    }

    fn map(&mut self) -> MapStorage<u16, &mut F, NoCache<u16>> {
        let config = MapConfig::try_new(self.memory.clone())
            .unwrap_or_else(|_| unreachable!("checked in FlashStore::new"));
        MapStorage::new(&mut self.flash, config, Cache::new_uncached())
    }
}

impl<F: MultiwriteNorFlash> Store for FlashStore<F>
where
    F::Error: fmt::Debug,
{
    type Error = StoreError<F::Error>;

    /// Reads the outbox in order, the answers (oldest first) and the config. Items that do not
    /// parse are left out; the engine checks the rest as a peer would.
    async fn load(&mut self) -> Result<Saved, Self::Error> {
        let mut saved = Saved::default();
        let mut buf = core::mem::take(&mut self.buf);
        let read = async {
            let mut queue = self.queue();
            let mut items = queue.iter().await?;
            while let Some(item) = items.next(&mut buf).await? {
                match parse_message(&item) {
                    Some(message) => saved.messages.push(message),
                    // Not one of this firmware's items: erased, so that it does not hold its
                    // page for ever.
                    None => {
                        item.pop().await?;
                    }
                }
            }
            Ok::<_, StoreError<F::Error>>(())
        }
        .await;
        self.buf = buf;
        read?;

        let mut answers = Vec::new();
        for slot in 1..=self.answered_capacity {
            let item = self.fetch_item(slot).await?;
            if let Some((sequence, command_id, response)) = item.as_deref().and_then(parse_answer) {
                answers.push((sequence, slot, command_id, response));
            }
        }
        // Oldest first; the sequence wraps after four billion answers, so order by the distance
        // behind the newest.
        if let Some(newest) = answers.iter().map(|a| a.0).max() {
            answers.sort_by_key(|a| core::cmp::Reverse(newest.wrapping_sub(a.0)));
            if let Some(last) = answers.last() {
                self.next_answer = (last.0.wrapping_add(1), last.1 % self.answered_capacity + 1);
            }
        }
        saved.answered = answers.into_iter().map(|a| (a.2, a.3)).collect();

        if let Some(item) = self.fetch_item(CONFIG_KEY).await? {
            let decoded = Decoder::new().decode_message(&self.topic(MessageKind::Config), &item);
            if let Ok(Message::Config(config)) = decoded {
                saved.config = Some(config.config);
            }
        }
        Ok(saved)
    }

    async fn save(&mut self, change: &Persist) -> Result<(), Self::Error> {
        match change {
            Persist::Queued { id, kind, payload } => self.push(*id, *kind, payload).await,
            Persist::Removed { id } => self.pop(*id).await,
            Persist::Answered {
                command_id,
                response,
            } => self.answered(command_id, response).await,
            Persist::Config(config) => self.config(config).await,
            // A change this firmware does not know yet is reported, not silently dropped.
            _ => Err(StoreError::Unsupported),
        }
    }
}

fn kind_code(kind: MessageKind) -> Option<u8> {
    match kind {
        MessageKind::Telemetry => Some(1),
        MessageKind::Alert => Some(2),
        MessageKind::CommandResponse => Some(3),
        _ => None,
    }
}

fn parse_message(item: &[u8]) -> Option<SavedMessage> {
    let id = u64::from_le_bytes(item.get(..8)?.try_into().ok()?);
    let kind = match item.get(8)? {
        1 => MessageKind::Telemetry,
        2 => MessageKind::Alert,
        3 => MessageKind::CommandResponse,
        _ => return None,
    };
    Some(SavedMessage {
        id: MessageId(id),
        kind,
        payload: item.get(9..)?.to_vec(),
    })
}

fn parse_answer(item: &[u8]) -> Option<(u32, CommandId, Vec<u8>)> {
    let sequence = u32::from_le_bytes(item.get(..4)?.try_into().ok()?);
    let len = usize::from(*item.get(4)?);
    let id = core::str::from_utf8(item.get(5..5 + len)?).ok()?;
    let command_id = CommandId::parse(id).ok()?;
    Some((sequence, command_id, item.get(5 + len..)?.to_vec()))
}
