//! The file source driven without the engine: a buffer stands in for the sink.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use siemflow_core::buffer::BufferReceiver;
use siemflow_core::decoding::Decoding;
use siemflow_core::event::{Batch, resolve_batch};
use siemflow_core::metrics::ComponentKind;
use siemflow_core::{BatchStatus, SourceConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::checkpoint;
use super::config::FileConfig;
use crate::testing::{counter_value, eventually, lines_of, next_batch, wire};

struct Running {
    rx: BufferReceiver,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    /// Folders the test made, kept as long as the source runs.
    dirs: Option<Dirs>,
}

fn quick_config(dir: &Path, pattern: &str) -> FileConfig {
    let mut config = FileConfig::with_include(vec![dir.join(pattern).display().to_string()]);
    config.decoding = Decoding::Text;
    config.glob_interval = Duration::from_millis(30);
    config.poll_interval = Duration::from_millis(10);
    config.checkpoint_interval = Duration::from_millis(20);
    config
}

fn start(id: &str, config: &FileConfig, state_dir: &Path) -> Running {
    let wired = wire(id, "file", state_dir);
    let future = config.build(wired.cx).expect("build");
    Running {
        rx: wired.rx,
        shutdown: wired.shutdown,
        task: tokio::spawn(future),
        dirs: None,
    }
}

impl Running {
    /// Receives batches, delivering each, until `count` events arrived.
    async fn deliver(&mut self, count: usize) -> Vec<String> {
        let mut lines = Vec::new();
        while lines.len() < count {
            let batch = next_batch(&mut self.rx).await;
            lines.extend(lines_of(&batch));
            resolve_batch(batch, BatchStatus::Delivered);
        }
        lines
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(crate::testing::PATIENCE, self.task)
            .await
            .expect("source stops")
            .expect("task");
        result.expect("source ends cleanly");
    }
}

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    file.write_all(text.as_bytes()).expect("append");
}

fn numbered(from: usize, to: usize) -> String {
    (from..to).map(|i| format!("line {i}\n")).collect()
}

fn expected(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("line {i}")).collect()
}

fn checkpoints(state_dir: &Path) -> Vec<checkpoint::Entry> {
    checkpoint::load(&state_dir.join(checkpoint::FILE_NAME)).unwrap_or_default()
}

fn offset_of(state_dir: &Path, path: &Path) -> Option<u64> {
    checkpoints(state_dir)
        .into_iter()
        .find(|e| e.path == path)
        .map(|e| e.offset)
}

fn size(path: &Path) -> u64 {
    fs::metadata(path).expect("metadata").len()
}

struct Dirs {
    _root: tempfile::TempDir,
    logs: PathBuf,
    state: PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().expect("tempdir");
    let logs = root.path().join("logs");
    let state = root.path().join("state");
    fs::create_dir_all(&logs).expect("logs dir");
    Dirs {
        logs,
        state,
        _root: root,
    }
}

#[tokio::test]
async fn reads_existing_and_new_files() {
    let d = dirs();
    let first = d.logs.join("a.log");
    append(&first, &numbered(0, 3));
    let mut source = start(
        "file_existing_new",
        &quick_config(&d.logs, "*.log"),
        &d.state,
    );
    assert_eq!(source.deliver(3).await, expected(0, 3));

    let second = d.logs.join("b.log");
    append(&second, &numbered(3, 5));
    assert_eq!(source.deliver(2).await, expected(3, 5));
    append(&first, &numbered(5, 6));
    assert_eq!(source.deliver(1).await, expected(5, 6));

    eventually("both checkpoints at the end", || {
        offset_of(&d.state, &first) == Some(size(&first))
            && offset_of(&d.state, &second) == Some(size(&second))
    })
    .await;
    source.stop().await;
    // The compliance check: 6 lines read and 6 passed on, with the standard labels.
    let labels = crate::testing::labels("file_existing_new", ComponentKind::Source, "file");
    crate::testing::assert_standard_metrics(&labels, 6);
}

#[tokio::test]
async fn excluded_files_are_skipped() {
    let d = dirs();
    append(&d.logs.join("skip.log"), "skipped\n");
    append(&d.logs.join("keep.log"), "kept\n");
    let mut config = quick_config(&d.logs, "*.log");
    config.exclude = vec![d.logs.join("skip*").display().to_string()];
    let mut source = start("file_exclude", &config, &d.state);
    assert_eq!(source.deliver(1).await, ["kept"]);
    source.stop().await;
    let paths: Vec<PathBuf> = checkpoints(&d.state).into_iter().map(|e| e.path).collect();
    assert_eq!(paths, [d.logs.join("keep.log")]);
}

#[tokio::test]
async fn rename_rotation_finishes_the_old_file_then_reads_the_new_one() {
    let d = dirs();
    let live = d.logs.join("app.log");
    append(&live, &numbered(0, 2));
    let mut source = start("file_rename", &quick_config(&d.logs, "app.log"), &d.state);
    assert_eq!(source.deliver(2).await, expected(0, 2));

    let rotated = d.logs.join("app.log.1");
    fs::rename(&live, &rotated).expect("rotate");
    // A writer that still holds the old file finishes its last lines there.
    append(&rotated, &numbered(2, 4));
    append(&live, &numbered(4, 6));
    let mut lines = source.deliver(4).await;
    lines.sort();
    assert_eq!(lines, expected(2, 6));

    // The old file is forgotten once drained and delivered; the new one is checkpointed.
    eventually("only the new file is checkpointed", || {
        let entries = checkpoints(&d.state);
        entries.len() == 1 && entries[0].path == live && entries[0].offset == size(&live)
    })
    .await;
    source.stop().await;
}

#[tokio::test]
async fn deleted_file_is_finished_and_forgotten() {
    let d = dirs();
    let path = d.logs.join("gone.log");
    append(&path, &numbered(0, 2));
    let mut source = start("file_delete", &quick_config(&d.logs, "*.log"), &d.state);
    assert_eq!(source.deliver(2).await, expected(0, 2));
    fs::remove_file(&path).expect("delete");
    eventually("the deleted file's checkpoint is pruned", || {
        checkpoints(&d.state).is_empty()
    })
    .await;
    source.stop().await;
}

#[tokio::test]
async fn copy_truncate_starts_again_at_zero() {
    let d = dirs();
    let path = d.logs.join("app.log");
    append(&path, &numbered(0, 3));
    let mut source = start("file_truncate", &quick_config(&d.logs, "*.log"), &d.state);
    assert_eq!(source.deliver(3).await, expected(0, 3));
    eventually("checkpoint at the end", || {
        offset_of(&d.state, &path) == Some(size(&path))
    })
    .await;

    // copy-truncate: the file keeps its inode and starts over with new content.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    append(&path, "fresh\n");
    assert_eq!(source.deliver(1).await, ["fresh"]);
    eventually("checkpoint follows the new content", || {
        let entries = checkpoints(&d.state);
        entries.len() == 1 && entries[0].offset == 6
    })
    .await;
    source.stop().await;
}

#[tokio::test]
async fn resumes_from_checkpoint_without_duplicates() {
    let d = dirs();
    let path = d.logs.join("app.log");
    append(&path, &numbered(0, 5));
    let config = quick_config(&d.logs, "*.log");
    let mut source = start("file_resume_1", &config, &d.state);
    assert_eq!(source.deliver(5).await, expected(0, 5));
    source.stop().await;
    assert_eq!(
        offset_of(&d.state, &path),
        Some(size(&path)),
        "saved at shutdown"
    );

    append(&path, &numbered(5, 7));
    let mut source = start("file_resume_2", &config, &d.state);
    let batch = next_batch(&mut source.rx).await;
    assert_eq!(
        lines_of(&batch),
        expected(5, 7),
        "only what was not delivered before"
    );
    resolve_batch(batch, BatchStatus::Delivered);
    source.stop().await;
    assert_eq!(offset_of(&d.state, &path), Some(size(&path)));
}

#[tokio::test]
async fn a_reused_inode_with_new_content_is_read_from_the_start() {
    let d = dirs();
    let path = d.logs.join("app.log");
    append(&path, "first\n");
    let config = quick_config(&d.logs, "*.log");
    let mut source = start("file_reuse_1", &config, &d.state);
    assert_eq!(source.deliver(1).await, ["first"]);
    source.stop().await;

    // Same inode, different first line, longer than the old checkpoint.
    fs::write(&path, "other content\nmore\n").expect("rewrite in place");
    let mut source = start("file_reuse_2", &config, &d.state);
    assert_eq!(source.deliver(2).await, ["other content", "more"]);
    source.stop().await;
}

#[tokio::test]
async fn read_from_end_skips_what_is_there() {
    let d = dirs();
    let path = d.logs.join("app.log");
    append(&path, "old\n");
    let mut config = quick_config(&d.logs, "*.log");
    config.read_from = super::ReadFrom::End;
    let mut source = start("file_read_end", &config, &d.state);
    eventually("the file is checkpointed at its end", || {
        offset_of(&d.state, &path) == Some(4)
    })
    .await;
    append(&path, "new\n");
    assert_eq!(source.deliver(1).await, ["new"]);
    source.stop().await;
}

#[tokio::test]
async fn checkpoint_never_passes_an_unacknowledged_batch() {
    let d = dirs();
    let path = d.logs.join("app.log");
    append(&path, &numbered(0, 6));
    let mut config = quick_config(&d.logs, "*.log");
    config.batch_max_events = 2;
    let mut source = start("file_hold", &config, &d.state);
    let first = next_batch(&mut source.rx).await;
    let second = next_batch(&mut source.rx).await;
    let third = next_batch(&mut source.rx).await;
    assert_eq!(lines_of(&third), expected(4, 6));
    resolve_batch(third, BatchStatus::Delivered);
    resolve_batch(second, BatchStatus::Delivered);
    // Shutting down now waits for the first batch, which then fails.
    source.shutdown.cancel();
    tokio::task::yield_now().await;
    resolve_batch(first, BatchStatus::Failed);
    let result = tokio::time::timeout(crate::testing::PATIENCE, source.task)
        .await
        .expect("stops")
        .expect("task");
    result.expect("clean end");
    assert_eq!(
        offset_of(&d.state, &path),
        Some(0),
        "nothing before the failed batch was delivered"
    );
    assert!(counter_value("component_errors_total", "file_hold", "delivery_failed") >= 1);
}

#[tokio::test]
async fn a_failure_holds_the_checkpoint_and_the_batch_is_read_again() {
    let d = dirs();
    let path = d.logs.join("app.log");
    append(&path, &numbered(0, 6));
    let mut config = quick_config(&d.logs, "*.log");
    config.batch_max_events = 2;
    let mut source = start("file_retry", &config, &d.state);
    let first = next_batch(&mut source.rx).await;
    let second = next_batch(&mut source.rx).await;
    let third = next_batch(&mut source.rx).await;
    assert_eq!(lines_of(&second), expected(2, 4));
    resolve_batch(first, BatchStatus::Delivered);
    resolve_batch(second, BatchStatus::Failed);
    resolve_batch(third, BatchStatus::Delivered);
    let line_two_end = (numbered(0, 2).len()) as u64;
    eventually("checkpoint at the end of the first batch", || {
        offset_of(&d.state, &path) == Some(line_two_end)
    })
    .await;

    // Everything from the failed batch on comes again; the checkpoint does not move past
    // the hole while the re-read is unacknowledged.
    let again = next_batch(&mut source.rx).await;
    assert_eq!(lines_of(&again), expected(2, 4));
    let rest = next_batch(&mut source.rx).await;
    assert_eq!(lines_of(&rest), expected(4, 6));
    resolve_batch(rest, BatchStatus::Delivered);
    // A new file makes the source write its checkpoints again, and it settles `rest`'s
    // acknowledgement before it handles the file (acknowledgements come first): the
    // checkpoints that list the new file show what `rest` did to the old one.
    let other = d.logs.join("other.log");
    let unfinished = d.logs.join("other.tmp");
    fs::write(&unfinished, "other\n").expect("write");
    fs::rename(&unfinished, &other).expect("appears whole");
    eventually(
        "the checkpoints written after the new file was found",
        || checkpoints(&d.state).iter().any(|e| e.path == other),
    )
    .await;
    assert_eq!(
        offset_of(&d.state, &path),
        Some(line_two_end),
        "a delivered batch after the hole moved the checkpoint"
    );
    let found = next_batch(&mut source.rx).await;
    assert_eq!(lines_of(&found), ["other"]);
    resolve_batch(found, BatchStatus::Delivered);
    resolve_batch(again, BatchStatus::Delivered);
    eventually(
        "checkpoint at the end once the re-read is delivered",
        || offset_of(&d.state, &path) == Some(size(&path)),
    )
    .await;
    assert_eq!(
        counter_value("component_errors_total", "file_retry", "delivery_failed"),
        1
    );
    source.stop().await;
}

#[tokio::test]
async fn a_partial_line_waits_for_its_newline() {
    let d = dirs();
    let path = d.logs.join("app.log");
    append(&path, "whole\npart");
    let mut source = start("file_partial", &quick_config(&d.logs, "*.log"), &d.state);
    assert_eq!(source.deliver(1).await, ["whole"]);
    eventually("checkpoint after the whole line only", || {
        offset_of(&d.state, &path) == Some(6)
    })
    .await;
    append(&path, "ial\n");
    let batch = next_batch(&mut source.rx).await;
    assert_eq!(lines_of(&batch), ["partial"]);
    resolve_batch(batch, BatchStatus::Delivered);
    source.stop().await;
}

#[tokio::test]
async fn oversized_lines_are_discarded_and_counted() {
    let d = dirs();
    let path = d.logs.join("app.log");
    let long = "x".repeat(100);
    append(&path, &format!("short\n{long}\nafter\n"));
    let mut config = quick_config(&d.logs, "*.log");
    config.max_line_bytes = 10;
    let mut source = start("file_too_long", &config, &d.state);
    let mut lines = Vec::new();
    while lines.len() < 2 {
        let batch: Batch = next_batch(&mut source.rx).await;
        lines.extend(lines_of(&batch));
        resolve_batch(batch, BatchStatus::Delivered);
    }
    assert_eq!(lines, ["short", "after"]);
    assert_eq!(
        counter_value("component_errors_total", "file_too_long", "line_too_long"),
        1
    );
    eventually("checkpoint past the discarded line", || {
        offset_of(&d.state, &path) == Some(size(&path))
    })
    .await;
    source.stop().await;
}

#[tokio::test]
async fn json_lines_become_objects_and_bad_ones_are_kept() {
    let d = dirs();
    let path = d.logs.join("audit.ndjson");
    append(&path, "{\"n\":1,\"Workload\":\"Exchange\"}\nnot json\n");
    let mut config = quick_config(&d.logs, "*.ndjson");
    config.decoding = Decoding::Json;
    let mut source = start("file_json", &config, &d.state);
    let batch = next_batch(&mut source.rx).await;
    assert_eq!(lines_of(&batch), ["1", "not json"]);
    resolve_batch(batch, BatchStatus::Delivered);
    assert_eq!(
        counter_value("component_errors_total", "file_json", "parse_failed"),
        1
    );
    assert_eq!(
        counter_value("component_received_events_total", "file_json", ""),
        2
    );
    source.stop().await;
}

#[test]
fn config_checks() {
    let config: FileConfig = toml::from_str("include = []\nexclude = [\"[\"]").expect("parses");
    let keys: Vec<Option<String>> = config.check().into_iter().map(|i| i.key).collect();
    assert_eq!(
        keys,
        [Some("include".to_string()), Some("exclude[0]".to_string())]
    );
    let config: FileConfig = toml::from_str(
        "include = [\"/x/*.log\"]\nglob_interval = \"5s\"\nmax_line_bytes = \"64KiB\"",
    )
    .expect("parses");
    assert!(config.check().is_empty());
    assert_eq!(config.glob_interval, Duration::from_secs(5));
    assert_eq!(config.max_line_bytes, 64 * 1024);
    assert!(toml::from_str::<FileConfig>("include = [\"a\"]\nbogus = 1").is_err());
    let config: FileConfig =
        toml::from_str("include = [\"/x/*.log\"]\nmax_open_files = 0").expect("parses");
    let keys: Vec<Option<String>> = config.check().into_iter().map(|i| i.key).collect();
    assert_eq!(keys, [Some("max_open_files".to_string())]);
    let config: FileConfig = toml::from_str(
        "include = [\"/x/*.log\"]\nmax_open_files = 10\nfollow_symlinks = \"never\"",
    )
    .expect("parses");
    assert!(config.check().is_empty());
    assert_eq!(config.follow_symlinks, super::FollowSymlinks::Never);
    assert!(
        toml::from_str::<FileConfig>("include = [\"a\"]\nfollow_symlinks = \"sometimes\"").is_err()
    );
}

#[test]
fn option_defaults_show_as_written_in_a_config() {
    let schema = schemars::schema_for!(FileConfig);
    let properties = schema
        .as_value()
        .get("properties")
        .expect("properties")
        .clone();
    let default = |key: &str| properties[key]["default"].clone();
    assert_eq!(default("glob_interval"), "1s");
    assert_eq!(default("poll_interval"), "200ms");
    assert_eq!(default("max_line_bytes"), "1MiB");
    assert_eq!(default("decoding"), "json");
    assert_eq!(default("read_from"), "beginning");
    assert_eq!(default("batch_max_events"), 500);
    assert_eq!(default("follow_symlinks"), "within_include");
    let required = schema.as_value()["required"].clone();
    assert_eq!(required, serde_json::json!(["include"]));
}

/// The highest `source_files_open` seen while `count` events are delivered.
async fn deliver_watching_open_files(
    source: &mut Running,
    id: &str,
    count: usize,
) -> (Vec<String>, u64) {
    let mut lines = Vec::new();
    let mut most_open = 0;
    while lines.len() < count {
        let batch = next_batch(&mut source.rx).await;
        most_open = most_open.max(counter_value("source_files_open", id, ""));
        lines.extend(lines_of(&batch));
        resolve_batch(batch, BatchStatus::Delivered);
    }
    (lines, most_open)
}

#[tokio::test]
async fn more_files_than_max_open_files_are_each_read_once_and_followed() {
    let d = dirs();
    let files = 40;
    for i in 0..files {
        append(
            &d.logs.join(format!("f{i:02}.log")),
            &numbered(i * 2, i * 2 + 2),
        );
    }
    let mut config = quick_config(&d.logs, "*.log");
    config.max_open_files = Some(3);
    let mut source = start("file_pool", &config, &d.state);
    let (mut lines, most_open) =
        deliver_watching_open_files(&mut source, "file_pool", files * 2).await;
    lines.sort_by_key(|l| l[5..].parse::<usize>().unwrap_or(usize::MAX));
    assert_eq!(lines, expected(0, files * 2), "every line once");
    assert!(
        most_open <= 3,
        "{most_open} files open with max_open_files = 3"
    );
    assert_eq!(counter_value("source_files_watched", "file_pool", ""), 40);

    // Closed files are opened again, at their offset, when they grow.
    append(&d.logs.join("f00.log"), &numbered(100, 101));
    append(&d.logs.join("f39.log"), &numbered(101, 102));
    let mut more = source.deliver(2).await;
    more.sort();
    assert_eq!(more, expected(100, 102));
    eventually("every checkpoint at its file's end", || {
        let entries = checkpoints(&d.state);
        entries.len() == files && entries.iter().all(|e| e.offset == size(&e.path))
    })
    .await;
    assert!(counter_value("source_files_open", "file_pool", "") <= 3);
    source.stop().await;
}

#[tokio::test]
async fn a_busy_file_takes_turns_with_waiting_files() {
    let d = dirs();
    let big = 2_000;
    append(&d.logs.join("a-big.log"), &numbered(0, big));
    for i in 0..4 {
        append(
            &d.logs.join(format!("small{i}.log")),
            &numbered(big + i, big + i + 1),
        );
    }
    let mut config = quick_config(&d.logs, "*.log");
    config.max_open_files = Some(1);
    config.batch_max_events = 10;
    let mut source = start("file_turns", &config, &d.state);
    let lines = source.deliver(big + 4).await;
    let last_of_big = lines
        .iter()
        .position(|l| *l == format!("line {}", big - 1))
        .expect("the big file's last line");
    for small in expected(big, big + 4) {
        let at = lines
            .iter()
            .position(|l| *l == small)
            .expect("small file read");
        assert!(
            at < last_of_big,
            "{small} waited until the busy file was read to its end"
        );
    }
    source.stop().await;
}

#[tokio::test]
async fn checkpoints_of_files_waiting_for_their_turn_are_kept() {
    let d = dirs();
    let files = 12;
    for i in 0..files {
        append(&d.logs.join(format!("f{i:02}.log")), &numbered(i, i + 1));
    }
    let mut config = quick_config(&d.logs, "*.log");
    let mut source = start("file_pool_resume_1", &config, &d.state);
    source.deliver(files).await;
    source.stop().await;

    for i in 0..files {
        append(
            &d.logs.join(format!("f{i:02}.log")),
            &numbered(100 + i, 101 + i),
        );
    }
    config.max_open_files = Some(2);
    let mut source = start("file_pool_resume_2", &config, &d.state);
    let mut lines = source.deliver(files).await;
    lines.sort();
    assert_eq!(lines, expected(100, 100 + files), "only the new lines");
    source.stop().await;
    assert!(
        checkpoints(&d.state)
            .iter()
            .all(|e| e.offset == size(&e.path))
    );
}

#[tokio::test]
async fn a_file_rotated_or_rewritten_while_closed_is_not_misread() {
    let d = dirs();
    let live = d.logs.join("app.log");
    let other = d.logs.join("other.log");
    append(&live, &numbered(0, 2));
    append(&other, &numbered(2, 3));
    let mut config = quick_config(&d.logs, "*.log*");
    config.max_open_files = Some(1);
    let mut source = start("file_pool_rotation", &config, &d.state);
    let mut lines = source.deliver(3).await;
    lines.sort();
    assert_eq!(lines, expected(0, 3));

    // Rename rotation while either may be closed: the old file goes on under its new
    // name at its offset; the new one is read from its start.
    fs::rename(&live, d.logs.join("app.log.1")).expect("rotate");
    append(&d.logs.join("app.log.1"), &numbered(3, 4));
    append(&live, &numbered(4, 5));
    let mut lines = source.deliver(2).await;
    lines.sort();
    assert_eq!(lines, expected(3, 5));

    // Rewritten in place with new content while closed or open: read from the start.
    fs::write(&other, "new first line\nline 5\n").expect("rewrite");
    let lines = source.deliver(2).await;
    assert_eq!(lines, ["new first line", "line 5"]);
    source.stop().await;
}

#[tokio::test]
async fn a_listing_that_fails_is_not_taken_for_a_deletion() {
    let d = dirs();
    let path = d.logs.join("app.log");
    append(&path, &numbered(0, 3));
    let mut source = start("file_listing", &quick_config(&d.logs, "*.log"), &d.state);
    assert_eq!(source.deliver(3).await, expected(0, 3));

    // The folder cannot be looked into for a while: a symlink to itself (ELOOP) takes
    // its place, as an unreadable folder or a process out of descriptors would.
    let aside = d.logs.with_extension("aside");
    fs::rename(&d.logs, &aside).expect("move the folder aside");
    std::os::unix::fs::symlink(&d.logs, &d.logs).expect("a symlink loop");
    eventually("listings failed", || {
        counter_value("component_errors_total", "file_listing", "listing_failed") >= 3
    })
    .await;
    fs::remove_file(&d.logs).expect("remove the loop");
    fs::rename(&aside, &d.logs).expect("put the folder back");

    append(&path, &numbered(3, 4));
    assert_eq!(
        source.deliver(1).await,
        expected(3, 4),
        "the file was not read again from its start"
    );
    eventually("the checkpoint kept and at the end", || {
        offset_of(&d.state, &path) == Some(size(&path))
    })
    .await;
    source.stop().await;
}

/// `logs/app.log` is read, then replaced by a symlink to `secret.txt` beside `logs/`.
async fn replace_with_symlink_to_secret(id: &str, follow: super::FollowSymlinks) -> Running {
    let d = dirs();
    let path = d.logs.join("app.log");
    append(&path, "first\n");
    let secret = d._root.path().join("secret.txt");
    fs::write(&secret, "secret\n").expect("secret");
    let mut config = quick_config(&d.logs, "*.log");
    config.follow_symlinks = follow;
    let mut source = start(id, &config, &d.state);
    assert_eq!(source.deliver(1).await, ["first"]);
    let link = d.logs.join("app.tmp");
    std::os::unix::fs::symlink(&secret, &link).expect("symlink");
    fs::rename(&link, &path).expect("replace the file with the symlink");
    source.dirs = Some(d);
    source
}

#[tokio::test]
async fn a_symlink_leading_outside_the_include_folder_is_not_read() {
    let id = "file_symlink_refused";
    let mut source = replace_with_symlink_to_secret(id, super::FollowSymlinks::WithinInclude).await;
    eventually("the symlink refused", || {
        counter_value("component_errors_total", id, "symlink_refused") == 1
    })
    .await;
    // A file that appears after the refusal comes next: the secret was never read.
    let logs = source.dirs.as_ref().expect("dirs").logs.clone();
    fs::write(logs.join("after.tmp"), "after\n").expect("write");
    fs::rename(logs.join("after.tmp"), logs.join("after.log")).expect("appears whole");
    assert_eq!(source.deliver(1).await, ["after"]);
    assert_eq!(
        counter_value("component_errors_total", id, "symlink_refused"),
        1,
        "counted once per path, not at every listing"
    );
    source.stop().await;
}

#[tokio::test]
async fn a_symlink_leading_outside_is_read_when_always_followed() {
    let mut source =
        replace_with_symlink_to_secret("file_symlink_always", super::FollowSymlinks::Always).await;
    assert_eq!(source.deliver(1).await, ["secret"]);
    source.stop().await;
}
