//! The SQLite queue's own cases (the shared ones are the contract suite's).

use super::*;
use std::collections::HashSet;

const Q: QueueName = QueueName::SubmitSpace;
const LONG: Duration = Duration::from_secs(60);

fn open() -> (tempfile::TempDir, SqliteQueue) {
    let dir = tempfile::tempdir().unwrap();
    let db = LocalDb::open(dir.path().join("db")).unwrap();
    (dir, db.queue())
}

#[tokio::test]
async fn a_received_message_is_hidden_until_its_visibility_ends() {
    let (_d, q) = open();
    let id = q.send(Q, "a", Duration::ZERO).await.unwrap();
    let got = q.receive(Q, 10, Duration::from_millis(200)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].message_id.as_str(), got[0].receive_count),
        (id.as_str(), 1)
    );
    assert!(q.receive(Q, 10, LONG).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(250)).await;
    let again = q.receive(Q, 10, LONG).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    assert_ne!(
        again[0].receipt, got[0].receipt,
        "each receive has its own receipt"
    );
}

#[tokio::test]
async fn delayed_messages_wait_for_their_delay() {
    let (_d, q) = open();
    q.send(Q, "later", Duration::from_millis(300))
        .await
        .unwrap();
    assert!(q.receive(Q, 10, LONG).await.unwrap().is_empty());
    let s = q.stats(Q).await.unwrap();
    assert_eq!(
        (s.depth, s.in_flight),
        (1, 0),
        "a delayed message counts as waiting"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(q.receive(Q, 10, LONG).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_stale_receipt_cannot_delete_or_extend_the_newer_receive() {
    let (_d, q) = open();
    q.send(Q, "m", Duration::ZERO).await.unwrap();
    let first = q.receive(Q, 1, Duration::ZERO).await.unwrap().remove(0);
    // A zero visibility still hides the message for a millisecond (so one receive cannot
    // return it twice); wait that out before the second receive.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = q.receive(Q, 1, LONG).await.unwrap().remove(0);
    assert_eq!(second.receive_count, 2);
    q.delete(Q, &first.receipt).await.unwrap();
    let err = q
        .change_visibility(Q, &first.receipt, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let s = q.stats(Q).await.unwrap();
    assert_eq!(
        s.in_flight, 1,
        "the stale delete left the message with its new receiver"
    );
    q.delete(Q, &second.receipt).await.unwrap();
    let s = q.stats(Q).await.unwrap();
    assert_eq!((s.depth, s.in_flight), (0, 0));
}

#[tokio::test]
async fn a_message_received_more_than_max_times_is_dead_lettered() {
    let (_d, q) = open();
    let q = q.with_max_receives(Q, 2);
    let id = q.send(Q, "poison", Duration::ZERO).await.unwrap();
    q.send(Q, "fine", Duration::from_millis(400)).await.unwrap();
    for n in 1..=2 {
        // A zero visibility still hides the message for a millisecond; wait that out.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let got = q.receive(Q, 1, Duration::ZERO).await.unwrap();
        assert_eq!((got[0].body.as_str(), got[0].receive_count), ("poison", n));
    }
    tokio::time::sleep(Duration::from_millis(420)).await;
    // The third receive moves "poison" aside and hands out the next message instead.
    let got = q.receive(Q, 1, LONG).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "fine");
    let dead = q.dead_letters(Q, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].message_id.as_str(), dead[0].receive_count),
        (id.as_str(), 2)
    );
    assert_eq!(q.stats(Q).await.unwrap().dead, 1);
    // Redrive puts it back with a fresh count.
    assert!(q.redrive(Q, &id).await.unwrap());
    let back = q.receive(Q, 1, LONG).await.unwrap();
    assert_eq!(
        (back[0].body.as_str(), back[0].receive_count),
        ("poison", 1)
    );
    assert_eq!(q.stats(Q).await.unwrap().dead, 0);
}

#[tokio::test]
async fn queues_are_separate_and_stats_count_each_state() {
    let (_d, q) = open();
    q.send(Q, "a", Duration::ZERO).await.unwrap();
    q.send(Q, "b", Duration::ZERO).await.unwrap();
    q.send(QueueName::PollStatus, "c", Duration::ZERO)
        .await
        .unwrap();
    let got = q.receive(Q, 1, LONG).await.unwrap();
    assert_eq!(got[0].body, "a", "oldest first");
    let s = q.stats(Q).await.unwrap();
    assert_eq!((s.depth, s.in_flight, s.dead), (1, 1, 0));
    assert!(s.oldest_age_s.is_some());
    assert_eq!(q.stats(QueueName::PollStatus).await.unwrap().depth, 1);
    assert_eq!(
        q.stats(QueueName::Reconstruct).await.unwrap(),
        QueueStats::default()
    );
}

#[tokio::test]
async fn wait_receive_wakes_on_an_in_process_send() {
    let (_d, q) = open();
    let q = q.with_poll_interval(Duration::from_secs(30));
    let sender = q.clone();
    let started = std::time::Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sender.send(Q, "wake", Duration::ZERO).await.unwrap();
    });
    let got = q
        .wait_receive(Q, 1, LONG, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn wait_receive_sleeps_until_a_delayed_message_is_due() {
    let (_d, q) = open();
    let q = q.with_poll_interval(Duration::from_secs(30));
    q.send(Q, "soon", Duration::from_millis(300)).await.unwrap();
    let started = std::time::Instant::now();
    let got = q
        .wait_receive(Q, 1, LONG, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn wait_receive_sees_another_process_send_by_polling() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let a = LocalDb::open(&path)
        .unwrap()
        .queue()
        .with_poll_interval(Duration::from_millis(50));
    let b = LocalDb::open(&path).unwrap().queue();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.send(Q, "from b", Duration::ZERO).await.unwrap();
    });
    let got = a
        .wait_receive(Q, 1, LONG, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got[0].body, "from b");
    let none = a
        .wait_receive(Q, 1, LONG, Duration::from_millis(100))
        .await
        .unwrap();
    assert!(none.is_empty(), "wait_receive returns empty after its wait");
}

#[test]
fn concurrent_receivers_on_separate_connections_never_share_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    const N: usize = 200;
    rt.block_on(async {
        let q = LocalDb::open(&path).unwrap().queue();
        for i in 0..N {
            q.send(Q, &i.to_string(), Duration::ZERO).await.unwrap();
        }
    });
    // Four handles, each its own connection (as separate processes would have).
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let q = LocalDb::open(&path).unwrap().queue();
                    let mut mine = Vec::new();
                    loop {
                        let got = q.receive(Q, 3, LONG).await.unwrap();
                        if got.is_empty() {
                            break;
                        }
                        mine.extend(got.into_iter().map(|d| d.message_id));
                    }
                    mine
                })
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut total = 0;
    for h in handles {
        for id in h.join().unwrap() {
            total += 1;
            assert!(seen.insert(id.clone()), "{id} was handed to two receivers");
        }
    }
    assert_eq!(total, N);
}

#[tokio::test]
async fn messages_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let q = LocalDb::open(&path).unwrap().queue();
        q.send(Q, "kept", Duration::ZERO).await.unwrap();
        q.send(Q, "in flight", Duration::ZERO).await.unwrap();
        q.receive(Q, 1, Duration::from_millis(100)).await.unwrap();
    }
    let q = LocalDb::open(&path).unwrap().queue();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let got = q.receive(Q, 10, LONG).await.unwrap();
    let mut bodies: Vec<_> = got.iter().map(|d| d.body.as_str()).collect();
    bodies.sort();
    assert_eq!(bodies, ["in flight", "kept"]);
}
