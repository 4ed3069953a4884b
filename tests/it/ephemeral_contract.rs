//! The short-lived state contract, run against process memory and Redis.

use std::time::Duration;

use gatehouse::ephemeral::{EphemeralStore, MemoryStore, RedisStore};

use crate::support::{self, Proxy};

fn key(name: &str) -> String {
    format!("test:{}:{name}", uuid::Uuid::new_v4().simple())
}

/// The contract; `a` and `b` are two handles on the same state (two nodes).
async fn contract<S: EphemeralStore + Clone + 'static>(
    a: &S,
    b: &S,
    ttl_wait: impl AsyncFn(Duration),
) {
    let long = Duration::from_secs(60);

    // put, get from the other handle, replace
    let k = key("put");
    a.put(&k, b"one", long).await.expect("put");
    assert_eq!(b.get(&k).await.expect("get").as_deref(), Some(&b"one"[..]));
    a.put(&k, b"two", long).await.expect("put");
    assert_eq!(b.get(&k).await.expect("get").as_deref(), Some(&b"two"[..]));
    assert_eq!(a.get(&key("missing")).await.expect("get"), None);

    // delete
    b.delete(&k).await.expect("delete");
    assert_eq!(a.get(&k).await.expect("get"), None);

    // put_if_absent
    let k = key("nx");
    assert!(a.put_if_absent(&k, b"first", long).await.expect("nx"));
    assert!(!b.put_if_absent(&k, b"second", long).await.expect("nx"));
    assert_eq!(
        a.get(&k).await.expect("get").as_deref(),
        Some(&b"first"[..])
    );

    // take is atomic: of many concurrent takers exactly one wins
    let k = key("code");
    a.put(&k, b"code", long).await.expect("put");
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let k = k.clone();
        tasks.push(tokio::spawn(async move { s.take(&k).await.expect("take") }));
    }
    let mut winners = 0;
    for t in tasks {
        if let Some(v) = t.await.expect("join") {
            assert_eq!(v, b"code");
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one taker gets a one-time value");
    assert_eq!(a.take(&k).await.expect("take"), None);

    // counters
    let k = key("counter");
    assert_eq!(a.incr(&k, long).await.expect("incr"), 1);
    assert_eq!(b.incr(&k, long).await.expect("incr"), 2);
    assert_eq!(a.incr(&k, long).await.expect("incr"), 3);

    // expiry of values, one-time values and counters
    let short = Duration::from_millis(200);
    let kv = key("ttl");
    let kc = key("ttl-counter");
    let kn = key("ttl-nx");
    a.put(&kv, b"v", short).await.expect("put");
    assert_eq!(a.incr(&kc, short).await.expect("incr"), 1);
    assert_eq!(a.incr(&kc, short).await.expect("incr"), 2);
    assert!(a.put_if_absent(&kn, b"x", short).await.expect("nx"));
    ttl_wait(Duration::from_millis(450)).await;
    assert_eq!(b.get(&kv).await.expect("get"), None, "value expired");
    assert_eq!(b.take(&kv).await.expect("take"), None);
    assert_eq!(
        b.incr(&kc, short).await.expect("incr"),
        1,
        "counter restarts after expiry"
    );
    assert!(
        b.put_if_absent(&kn, b"y", short).await.expect("nx"),
        "slot free after expiry"
    );

    // notices reach every subscriber, on every handle
    let mut rx = b.subscribe();
    let channel = format!("test-{}", uuid::Uuid::new_v4().simple());
    // Redis subscriptions are asynchronous: publish until the first one arrives.
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            a.publish(&channel, "42").await.expect("publish");
            match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                Ok(Ok(n)) if n.channel == channel => return n,
                _ => continue,
            }
        }
    })
    .await
    .expect("notice delivered");
    assert_eq!(got.message, "42");

    a.ping().await.expect("ping");
}

#[tokio::test]
async fn memory_keeps_the_contract() {
    let a = MemoryStore::new();
    let b = a.clone();
    contract(&a, &b, async |d| tokio::time::sleep(d).await).await;
}

#[tokio::test(start_paused = true)]
async fn memory_expiry_follows_the_clock() {
    let s = MemoryStore::new();
    s.put("k", b"v", Duration::from_secs(300))
        .await
        .expect("put");
    s.incr("c", Duration::from_secs(60)).await.expect("incr");
    tokio::time::advance(Duration::from_secs(299)).await;
    assert!(s.get("k").await.expect("get").is_some());
    assert_eq!(s.incr("c", Duration::from_secs(60)).await.expect("incr"), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(s.get("k").await.expect("get").is_none());
    // many expired entries are swept by later writes, not kept forever
    for i in 0..3000 {
        s.put(&format!("x{i}"), b"v", Duration::from_secs(1))
            .await
            .expect("put");
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    for i in 0..3000 {
        assert!(s.get(&format!("x{i}")).await.expect("get").is_none());
    }
}

#[tokio::test]
async fn redis_keeps_the_contract() {
    let Some(url) = support::redis_url() else {
        return;
    };
    let a = RedisStore::connect(&url).await.expect("connect");
    let b = RedisStore::connect(&url).await.expect("second node");
    contract(&a, &b, async |d| tokio::time::sleep(d).await).await;
}

#[tokio::test]
async fn redis_reconnects_after_an_outage() {
    let Some(url) = support::redis_url() else {
        return;
    };
    let upstream = url::Url::parse(&url).expect("redis url");
    let proxy = Proxy::start(format!(
        "{}:{}",
        upstream.host_str().expect("host"),
        upstream.port().unwrap_or(6379)
    ))
    .await;
    let via_proxy = format!("redis://{}/", proxy.addr);
    let s = RedisStore::connect(&via_proxy).await.expect("connect");
    let direct = RedisStore::connect(&url).await.expect("direct");
    s.ping().await.expect("ping");

    proxy.cut();
    assert!(s.ping().await.is_err(), "unreachable while cut");
    assert!(s.put("k", b"v", Duration::from_secs(5)).await.is_err());
    proxy.restore();

    // Commands and the notice subscription come back without a new store.
    let back = tokio::time::timeout(Duration::from_secs(10), async {
        while s.ping().await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(back.is_ok(), "commands recover after the outage");
    let mut rx = s.subscribe();
    let channel = format!("test-{}", uuid::Uuid::new_v4().simple());
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            direct.publish(&channel, "after").await.expect("publish");
            match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                Ok(Ok(n)) if n.channel == channel => return n,
                _ => continue,
            }
        }
    })
    .await;
    assert!(
        got.is_ok(),
        "the notice subscription recovers after the outage"
    );
}

#[tokio::test]
async fn redis_unreachable_at_start_is_an_error() {
    let port = support::free_port();
    let err = RedisStore::connect(&format!("redis://127.0.0.1:{port}/"))
        .await
        .err()
        .expect("no Redis there");
    assert!(err.to_string().contains("unavailable"), "{err}");
}
