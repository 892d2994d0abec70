//! A round trip through the real Redis of `make env-up`.

use kubecrawl_e2e::TestEnv;
use redis::AsyncCommands;

#[tokio::test]
async fn redis_round_trip_with_a_script() {
    let env = TestEnv::get();
    let client = redis::Client::open(env.redis_url.as_str()).expect("valid REDIS_URL");
    let mut con = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        client.get_multiplexed_async_connection(),
    )
    .await
    .expect("connecting to redis hung")
    .expect("redis accepts connections");

    let key = format!("kc:e2e:roundtrip:{}", std::process::id());
    let () = con.set_ex(&key, "hello", 60).await.expect("SET");
    let got: String = con.get(&key).await.expect("GET");
    assert_eq!(got, "hello");

    // The frontier's hot path is Lua: check scripts run and see the data.
    let script = redis::Script::new("return redis.call('APPEND', KEYS[1], ARGV[1])");
    let len: usize = script
        .key(&key)
        .arg(" world")
        .invoke_async(&mut con)
        .await
        .expect("EVALSHA");
    assert_eq!(len, "hello world".len());

    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut con)
        .await
        .expect("INFO");
    assert!(info.contains("redis_version:"), "INFO server: {info}");
    let deleted: usize = con.del(&key).await.expect("DEL");
    assert_eq!(deleted, 1);
}
