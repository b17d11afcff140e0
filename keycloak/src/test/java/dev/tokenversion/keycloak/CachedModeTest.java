package dev.tokenversion.keycloak;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.net.URI;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.BooleanSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The cached mode: the map (versions never go down, freshness only moves forward), the feed follower against a
 * loopback provider that speaks the feed protocol (versions pages, then events), the staleness rule, the circuit
 * breaker and the asynchronous provisioning of new subjects.
 */
class CachedModeTest {

    static final String ISS = "http://127.0.0.1:8080/realms/demo";

    /** A provider's feed in miniature: the versions table and the audit trail, served as the provider does. */
    static final class FakeProvider {
        final Map<String, Long> versions = new ConcurrentHashMap<>();
        final List<long[]> eventIds = new ArrayList<>(); // [id]
        final List<String[]> events = new ArrayList<>(); // [scope, subject, version]
        volatile int pageSize = 1000;
        volatile int status = 200;
        volatile String claimsBody = null; // null: answer from versions

        synchronized void bump(String sub) {
            long v = versions.merge(sub, 1L, Long::sum);
            events.add(new String[] {"user", sub, String.valueOf(v)});
        }

        synchronized void sessionRevoked(String sid) {
            events.add(new String[] {"session", "", ""});
        }

        synchronized String cursor() {
            int n = events.size();
            return "v1." + n + "." + n + ".0";
        }

        void install(StubServer stub) {
            stub.route("/tokenversion/feed/versions", this::versionsPage);
            stub.route("/tokenversion/feed/events", this::eventsAnswer);
            stub.route("/tokenversion/claims", q -> status != 200 ? new StubServer.Reply(status, "{}")
                    : new StubServer.Reply(200, claimsBody != null ? claimsBody : "{\"token_version\":0}"));
        }

        private synchronized StubServer.Reply versionsPage(String query) {
            if (status != 200) {
                return new StubServer.Reply(status, "{\"error\":\"x\"}");
            }
            List<String> subs = new ArrayList<>(versions.keySet());
            subs.sort(null);
            int from = 0;
            Matcher m = Pattern.compile("page=(\\d+)").matcher(query);
            if (m.find()) {
                from = Integer.parseInt(m.group(1));
            }
            StringBuilder rows = new StringBuilder();
            int to = Math.min(subs.size(), from + pageSize);
            for (int i = from; i < to; i++) {
                rows.append(i > from ? "," : "").append("{\"issuer\":\"").append(ISS).append("\",\"sub\":\"")
                        .append(subs.get(i)).append("\",\"token_version\":").append(versions.get(subs.get(i)))
                        .append('}');
            }
            String next = to < subs.size() ? "\"" + to + "\"" : "null";
            return new StubServer.Reply(200, "{\"cursor\":\"" + cursor() + "\",\"versions\":[" + rows
                    + "],\"next_page\":" + next + ",\"as_of\":0.0,\"server_time\":0}");
        }

        private StubServer.Reply eventsAnswer(String query) {
            if (status != 200) {
                return new StubServer.Reply(status, "{\"error\":\"x\"}");
            }
            Matcher m = Pattern.compile("after=v1\\.(\\d+)").matcher(query);
            assertTrue(m.find(), query);
            int after = Integer.parseInt(m.group(1));
            long slept = 0;
            synchronized (this) {
                if (events.size() <= after) {
                    try { // a long-poll in miniature: wait up to 200 ms for a change
                        long t0 = System.nanoTime();
                        wait(200);
                        slept = System.nanoTime() - t0;
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
                StringBuilder out = new StringBuilder();
                for (int i = after; i < events.size(); i++) {
                    String[] e = events.get(i);
                    out.append(i > after ? "," : "").append("{\"id\":").append(i + 1).append(",\"scope\":\"")
                            .append(e[0]).append("\",\"issuer\":\"").append(ISS).append("\",\"at\":1")
                            .append(e[0].equals("user") ? ",\"subject\":\"" + e[1] + "\",\"version\":" + e[2] : "")
                            .append('}');
                }
                return new StubServer.Reply(200, "{\"cursor\":\"" + cursor() + "\",\"events\":[" + out
                        + "],\"last_id\":" + events.size() + ",\"more\":false,\"settled\":true,\"as_of\":"
                        + (slept / 1e9) + "}");
            }
        }

        synchronized void wake() {
            notifyAll();
        }
    }

    private StubServer stub;
    private FakeProvider provider;
    private CachedResolver resolver;

    @BeforeEach
    void setUp() throws Exception {
        stub = new StubServer();
        provider = new FakeProvider();
        provider.install(stub);
        resolver = new CachedResolver(new VersionCache(1000), 1000);
    }

    @AfterEach
    void tearDown() {
        resolver.stopAll();
        stub.close();
    }

    private VersionResolver.Settings settings(URI claims, FailurePolicy policy, long maxStalenessMs) {
        return new VersionResolver.Settings(claims, "mapper-secret", 300, 500, policy, MapperMode.CACHED,
                "feed-secret", maxStalenessMs);
    }

    private VersionResolver.Settings settings() {
        return settings(stub.uri("/tokenversion/claims"), FailurePolicy.OMIT_CLAIM, 2000);
    }

    private static ClaimsRequest request(String sub) {
        return new ClaimsRequest(sub, ISS, sub, null, "web", "sid-" + sub);
    }

    private static void eventually(BooleanSupplier condition, String what) throws InterruptedException {
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                fail("not within 5 s: " + what);
            }
            Thread.sleep(10);
        }
    }

    private VersionMap loadedMap() throws InterruptedException {
        FeedFollower f = resolver.follower(settings());
        f.touch(2000);
        eventually(() -> f.map().loaded(), "the map loaded");
        return f.map();
    }

    // The map.

    @Test
    void versionsNeverGoDownAndAbsentMeansZero() {
        VersionMap map = new VersionMap(10);
        assertEquals(0, map.versionOf(ISS, "u"));
        assertEquals(3, map.apply(ISS, "u", 3));
        assertEquals(3, map.apply(ISS, "u", 2)); // a late or replayed lower value
        assertEquals(3, map.apply(ISS, "u", 0));
        assertEquals(5, map.apply(ISS, "u", 5));
        assertEquals(OptionalLong.of(5), map.get(ISS, "u"));
        assertEquals(0, map.versionOf("http://other/realms/x", "u")); // keyed by issuer too
        assertEquals(1, map.size());
    }

    @Test
    void freshnessOnlyMovesForwardAndNeverLoadedIsInfinitelyStale() {
        VersionMap map = new VersionMap(10);
        assertEquals(Long.MAX_VALUE, map.stalenessMs(System.nanoTime()));
        assertFalse(map.loaded());
        long now = System.nanoTime();
        map.markFresh(now - 1_000_000_000L);
        assertTrue(map.loaded());
        assertTrue(map.stalenessMs(now) >= 1000);
        map.markFresh(now - 5_000_000_000L); // an older proof does not move it back
        assertTrue(map.stalenessMs(now) < 1100);
        map.markFresh(now);
        assertTrue(map.stalenessMs(now) < 50);
    }

    @Test
    void aMapOverItsBoundStopsClaimingFreshness() {
        VersionMap map = new VersionMap(2);
        map.markFresh(System.nanoTime());
        map.apply(ISS, "a", 1);
        map.apply(ISS, "b", 1);
        assertTrue(map.loaded());
        map.apply(ISS, "c", 1); // would be dropped: the map can no longer say "absent means 0"
        assertFalse(map.loaded());
        assertEquals(Long.MAX_VALUE, map.stalenessMs(System.nanoTime()));
    }

    // The follower.

    @Test
    void loadsEveryPageThenFollowsTheEvents() throws Exception {
        provider.pageSize = 2;
        for (String s : List.of("a", "b", "b", "c", "d", "e")) {
            provider.bump(s);
        }
        VersionMap map = loadedMap();
        assertEquals(1, map.versionOf(ISS, "a"));
        assertEquals(2, map.versionOf(ISS, "b"));
        assertEquals(1, map.versionOf(ISS, "e"));
        assertEquals(3, stub.count("/tokenversion/feed/versions"), "three pages of two");
        for (StubServer.Received r : stub.received) {
            if (r.path().startsWith("/tokenversion/feed/")) {
                assertEquals("feed-secret", r.secret(), "the feed secret, not the mapper secret");
            }
        }

        provider.bump("a");
        provider.sessionRevoked("sid-1"); // no version in it: ignored
        provider.bump("new");
        provider.wake();
        eventually(() -> map.versionOf(ISS, "new") == 1 && map.versionOf(ISS, "a") == 2, "the events applied");
        assertTrue(stub.received.stream().anyMatch(r -> r.path().equals("/tokenversion/feed/events")));
    }

    @Test
    void theFollowerLongPollsWithHalfTheBound() throws Exception {
        FeedFollower f = resolver.follower(settings());
        f.touch(2000);
        assertEquals(1000, f.pollWaitMs());
        f.touch(600_000);
        assertEquals(1000, f.pollWaitMs(), "the smallest bound of the mappers sharing it wins");
        eventually(() -> stub.received.stream().anyMatch(r -> r.path().equals("/tokenversion/feed/events")),
                "a long-poll");
    }

    @Test
    void fullLongPollSlotsSwitchToPollsWithoutWaitAndKeepTheMapFresh() throws Exception {
        VersionMap map = loadedMap();
        java.util.List<String> queries = new java.util.concurrent.CopyOnWriteArrayList<>();
        java.util.function.Function<String, StubServer.Reply> events = q -> {
            queries.add(q);
            return q.contains("wait=0.000") ? new StubServer.Reply(200, "{\"cursor\":\"v1.0.0.0\",\"events\":[],"
                    + "\"last_id\":0,\"more\":false,\"settled\":true,\"as_of\":0.001}")
                    : new StubServer.Reply(503, "{\"error\":\"feed_busy\"}");
        };
        stub.route("/tokenversion/feed/events", events);
        eventually(() -> queries.stream().anyMatch(q -> q.contains("wait=0.000")), "a poll without wait");
        FeedFollower f = resolver.follower(settings());
        assertFalse(f.providerUnavailable(), "a busy provider is not an outage");
        Thread.sleep(2500);
        assertTrue(map.stalenessMs(System.nanoTime()) < 2000, "fresh through polls without wait");
        long waits = queries.stream().filter(q -> !q.contains("wait=0.000")).count();
        assertTrue(waits <= 2, "back to long-polls only after a while: " + queries);
    }

    @Test
    void anExpiredCursorReloadsAndKeepsTheHigherVersions() throws Exception {
        provider.bump("a");
        provider.bump("a");
        VersionMap map = loadedMap();
        assertEquals(2, map.versionOf(ISS, "a"));
        // The provider's database replaced by an older copy: 410, then a load that says a is at 1.
        provider.status = 410;
        eventually(() -> resolver.follower(settings()).lastError() != null, "the 410 seen");
        provider.status = 200;
        provider.versions.put("a", 1L);
        long loads = resolver.follower(settings()).loads.get();
        eventually(() -> resolver.follower(settings()).loads.get() > loads, "a new load");
        assertEquals(2, map.versionOf(ISS, "a"), "versions never go down");
    }

    // The decision at token issue.

    @Test
    void aFreshMapAnswersWithoutAnyClaimsCallForKnownSubjects() throws Exception {
        provider.bump("bumped");
        loadedMap();
        provider.claimsBody = "{\"token_version\":0}";
        // "bumped" is in the map; "seen" has had a claims answer (provisioned): neither costs a call.
        VersionResolver.Result r = resolver.resolve(ISS, request("bumped"), settings());
        assertEquals(OptionalLong.of(1), r.version());
        assertEquals(VersionResolver.Source.MAP, r.source());
        assertEquals(0, stub.count("/tokenversion/claims"));
    }

    @Test
    void aNewSubjectGetsZeroAtOnceAndIsProvisionedOffThePath() throws Exception {
        loadedMap();
        VersionResolver.Result r = resolver.resolve(ISS, request("newcomer"), settings());
        assertEquals(OptionalLong.of(0), r.version());
        assertEquals(VersionResolver.Source.MAP, r.source());
        eventually(() -> stub.count("/tokenversion/claims") == 1, "one asynchronous claims call");
        StubServer.Received call = stub.received.stream()
                .filter(x -> x.path().equals("/tokenversion/claims")).findFirst().orElseThrow();
        assertTrue(call.body().contains("\"sub\":\"newcomer\""));
        assertEquals("mapper-secret", call.secret());
        eventually(() -> resolver.provisioner().provisioned.get() == 1, "provisioned");
        // Known now: the next tokens cost nothing.
        for (int i = 0; i < 5; i++) {
            resolver.resolve(ISS, request("newcomer"), settings());
        }
        Thread.sleep(100);
        assertEquals(1, stub.count("/tokenversion/claims"));
    }

    @Test
    void aStaleMapAsksTheProviderAndKeepsTheLargerVersion() throws Exception {
        provider.bump("u");
        VersionMap map = loadedMap();
        // The feed answers 404 from now on (reachable, so no breaker): the proof ages past a 300 ms bound.
        stub.route("/tokenversion/feed/events", q -> new StubServer.Reply(404, "{}"));
        VersionResolver.Settings strict = settings(stub.uri("/tokenversion/claims"), FailurePolicy.OMIT_CLAIM, 300);
        eventually(() -> map.stalenessMs(System.nanoTime()) > 300, "the map stale for a 300 ms bound");
        provider.claimsBody = "{\"token_version\":4}";
        VersionResolver.Result r = resolver.resolve(ISS, request("u"), strict);
        assertEquals(OptionalLong.of(4), r.version());
        assertEquals(VersionResolver.Source.PROVIDER, r.source());
        assertEquals(4, map.versionOf(ISS, "u"), "the answer goes into the map");
        provider.claimsBody = "{\"token_version\":2}"; // a lagging answer (a replica, a race): not below the map
        assertEquals(OptionalLong.of(4), resolver.resolve(ISS, request("u"), strict).version());
        assertEquals(150, resolver.follower(strict).pollWaitMs(), "the follower now polls for the 300 ms bound");
    }

    @Test
    void theProviderDownOpensTheBreakerAndTheMapAnswersWithoutWaiting() throws Exception {
        provider.bump("bumped");
        VersionMap map = loadedMap();
        FeedFollower f = resolver.follower(settings());
        provider.status = 503;
        eventually(f::providerUnavailable, "the breaker open");
        long claimsBefore = stub.count("/tokenversion/claims");
        eventually(() -> map.stalenessMs(System.nanoTime()) > 2000, "the map stale");
        long t0 = System.nanoTime();
        VersionResolver.Result bumped = resolver.resolve(ISS, request("bumped"), settings());
        VersionResolver.Result stranger = resolver.resolve(ISS, request("stranger"), settings());
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertEquals(OptionalLong.of(1), bumped.version(), "a revocation made before the outage still bites");
        assertEquals(VersionResolver.Source.STALE_MAP, bumped.source());
        assertEquals(OptionalLong.of(0), stranger.version(), "never bumped: 0, the provider's answer too");
        assertEquals(claimsBefore, stub.count("/tokenversion/claims"), "no claims call while the breaker is open");
        assertTrue(ms < 100, "no waiting on the token path, took " + ms + " ms");

        // Back: the breaker closes, the map is fresh again, the stranger is provisioned.
        provider.status = 200;
        eventually(() -> !f.providerUnavailable(), "the breaker closed");
        eventually(() -> map.stalenessMs(System.nanoTime()) < 2000, "fresh again");
        eventually(() -> stub.received.stream().anyMatch(r -> r.path().equals("/tokenversion/claims")
                && r.body().contains("\"sub\":\"stranger\"")), "the stranger provisioned after the outage");
    }

    @Test
    void neverLoadedAndProviderDownAppliesTheFailurePolicy() throws Exception {
        URI closed = URI.create("http://127.0.0.1:" + StubServer.closedPort() + "/tokenversion/claims");
        VersionResolver.Result r = resolver.resolve(ISS, request("u"), settings(closed, FailurePolicy.OMIT_CLAIM, 2000));
        assertEquals(VersionResolver.Source.NONE, r.source());
        assertTrue(r.version().isEmpty());
        assertTrue(resolver.follower(settings(closed, FailurePolicy.OMIT_CLAIM, 2000)).providerUnavailable());
        assertThrows(VersionResolver.VersionUnavailableException.class,
                () -> resolver.resolve(ISS, request("u"), settings(closed, FailurePolicy.FAIL, 2000)));
    }

    @Test
    void neverLoadedButProviderUpUsesTheClaimsEndpoint() {
        provider.status = 200;
        stub.route("/tokenversion/feed/versions", q -> new StubServer.Reply(404, "{}")); // an older provider
        provider.claimsBody = "{\"token_version\":3}";
        VersionResolver.Result r = resolver.resolve(ISS, request("u"), settings());
        assertEquals(OptionalLong.of(3), r.version());
        assertEquals(VersionResolver.Source.PROVIDER, r.source());
    }

    // The configuration.

    @Test
    void modeAndItsKeys() {
        Map<String, String> c = new HashMap<>();
        c.put(MapperConfig.ENDPOINT_URL, "http://127.0.0.1:8000/tokenversion/claims");
        assertEquals(MapperMode.DIRECT, MapperConfig.parse(c, null).mode(), "absent: direct, as before");
        c.put(MapperConfig.MODE, "cached");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> MapperConfig.parse(c, null));
        assertTrue(e.getMessage().startsWith(MapperConfig.FEED_SECRET));
        c.put(MapperConfig.FEED_SECRET, "${vault.feed}");
        VersionResolver.Settings s = MapperConfig.parse(c, raw -> "resolved");
        assertEquals(MapperMode.CACHED, s.mode());
        assertEquals("resolved", s.feedSecret());
        assertEquals(MapperConfig.DEFAULT_MAX_STALENESS_MS, s.maxStalenessMs());
        c.put(MapperConfig.MAX_STALENESS_MS, "50");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> MapperConfig.parse(c, null)).getMessage()
                .startsWith(MapperConfig.MAX_STALENESS_MS));
        c.put(MapperConfig.MAX_STALENESS_MS, "5000");
        assertEquals(5000, MapperConfig.parse(c, null).maxStalenessMs());
        c.put(MapperConfig.ENDPOINT_URL, "http://127.0.0.1:8000/tokenversion/claims/");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> MapperConfig.parse(c, null)).getMessage()
                .startsWith(MapperConfig.ENDPOINT_URL));
        c.put(MapperConfig.MODE, "sometimes");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> MapperConfig.parse(c, null)).getMessage()
                .startsWith(MapperConfig.MODE));
    }
}
