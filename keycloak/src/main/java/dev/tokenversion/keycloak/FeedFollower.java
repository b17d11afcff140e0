package dev.tokenversion.keycloak;

import com.fasterxml.jackson.databind.JsonNode;
import org.jboss.logging.Logger;

import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Keeps one {@link VersionMap} current from one provider's feed: ONE daemon thread per (feed, secret) on a
 * Keycloak node, shared by every mapper that points there.
 *
 * <p>The protocol is the services' remote store's (server/tokenversion_server/feed.py, docs/scaling.md):
 * <ol>
 *   <li>{@code GET feed/versions}, paged: every subject above version 0 and the cursor, taken under the settled
 *       horizon; the first page's {@code as_of} is the instant the whole load vouches for;</li>
 *   <li>then {@code GET feed/events?after=<cursor>&have=<id>&wait=<s>} long-polls; an answer holds every visible
 *       audit row above the position (rows above the cursor come again: applying them twice is harmless), and
 *       only its last page ({@code more} false) proves freshness as of the first page's read.</li>
 * </ol>
 * A request sent at {@code t} (this JVM's clock) whose answer says {@code as_of = a} proves every bump committed
 * before {@code t + a} is in it: the provider received the request after {@code t} and read {@code a} seconds
 * after receiving it. Only user-scope events carry versions; session and realm events do not concern the map.
 *
 * <p><b>Circuit breaker.</b> A network error, timeout or 5xx (here, or in a claims call of the mapper:
 * {@link #noteUnavailable()}) marks the provider unavailable for {@link #BREAKER_MS}; any good answer closes it.
 * While it is open the mapper does not try the claims call on its token path. The thread retries every
 * {@link #RETRY_MS} while the provider is away, so the breaker closes within about a second of its return.
 * A 410 (the provider's database was replaced) starts a new load; the map is kept meanwhile (versions only grow).
 *
 * <p>Lifecycle: started by the first token issued in cached mode ({@link #touch}); stops by itself after
 * {@link #IDLE_STOP_MS} without use (a mapper that moved to another endpoint leaves no thread behind), and at
 * JVM shutdown ({@link CachedResolver#stopAll()}).
 */
public final class FeedFollower {

    private static final Logger LOG = Logger.getLogger(FeedFollower.class);

    static final long BREAKER_MS = 3_000;
    static final long RETRY_MS = 1_000;
    static final long CONFIG_ERROR_RETRY_MS = 5_000;
    static final long IDLE_STOP_MS = 15 * 60_000;
    /** After a 503 {@code feed_busy} (the provider's long-poll slots are all taken), poll without waiting, which
     * the provider never refuses, for this long. */
    static final long SHORT_POLL_MS = 30_000;
    static final long MAX_WAIT_MS = 25_000; // the provider's default FEED_MAX_WAIT
    static final long PAGE_TIMEOUT_MS = 10_000; // a versions page: the first one settles the horizon (up to 2 s)
    static final int MAX_BODY_BYTES = 64 * 1024 * 1024;
    private static final Pattern CURSOR = Pattern.compile("v1\\.([0-9]{1,19})\\.([0-9]{1,19})\\.([0-9]{1,20})");

    /** Why a feed round failed: {@code unavailable} opens the breaker, {@code expired} (410) reloads. */
    static final class FeedException extends Exception {
        final boolean unavailable;
        final boolean expired;
        final boolean configuration;
        boolean busy;

        FeedException(String message, boolean unavailable, boolean expired, boolean configuration) {
            super(message);
            this.unavailable = unavailable;
            this.expired = expired;
            this.configuration = configuration;
        }
    }

    private final URI versionsUri;
    private final URI eventsUri;
    private final String secret;
    private final long connectTimeoutMs;
    private final VersionMap map;
    private final String shown;

    private volatile long pollWaitMs = MAX_WAIT_MS;
    private volatile long unavailableUntil = System.nanoTime();
    private volatile boolean breakerOpen;
    private volatile long lastUsed = System.nanoTime();
    private volatile long shortPollUntil = System.nanoTime();
    private volatile String lastError;
    private String cursor;
    private long cursorSafe;
    private long have;
    private volatile Thread thread;
    private volatile boolean stopping;

    final AtomicLong loads = new AtomicLong();
    final AtomicLong rounds = new AtomicLong();
    final AtomicLong failures = new AtomicLong();

    /**
     * @param claimsEndpoint the mapper's claims URL, ending in {@code /claims}; the feed is next to it
     */
    FeedFollower(URI claimsEndpoint, String secret, long connectTimeoutMs, VersionMap map) {
        this.versionsUri = claimsEndpoint.resolve("feed/versions");
        this.eventsUri = claimsEndpoint.resolve("feed/events");
        this.secret = secret;
        this.connectTimeoutMs = connectTimeoutMs;
        this.map = map;
        this.shown = VersionResolver.forLog(versionsUri.resolve("."));
    }

    public VersionMap map() {
        return map;
    }

    /** A mapper used the map: start the thread if needed, and poll often enough for its staleness bound. Called at
     * every token issue: no lock unless something has to change. */
    void touch(long maxStalenessMs) {
        lastUsed = System.nanoTime();
        // An idle long-poll ages the proof by its wait plus a round trip: half the bound leaves the other half.
        long wanted = Math.max(100, Math.min(MAX_WAIT_MS, maxStalenessMs / 2));
        Thread t = thread;
        if (t != null && t.isAlive() && wanted >= pollWaitMs) {
            return;
        }
        start(wanted);
    }

    private synchronized void start(long wanted) {
        if (wanted < pollWaitMs) {
            pollWaitMs = wanted;
        }
        if (thread == null || !thread.isAlive()) {
            stopping = false;
            thread = new Thread(this::run, "tokenversion-feed-follower " + shown);
            thread.setDaemon(true);
            thread.start();
        }
    }

    /** The provider is known to be unavailable now: the mapper skips claims calls on the token path. */
    public boolean providerUnavailable() {
        return breakerOpen && System.nanoTime() - unavailableUntil < 0;
    }

    /** A call to the provider failed for want of a provider (network, timeout, 5xx). */
    void noteUnavailable() {
        unavailableUntil = System.nanoTime() + BREAKER_MS * 1_000_000;
        breakerOpen = true;
    }

    /** A call to the provider got a good answer. */
    void noteAvailable() {
        breakerOpen = false;
    }

    long pollWaitMs() {
        return pollWaitMs;
    }

    String lastError() {
        return lastError;
    }

    void stop() {
        Thread t;
        synchronized (this) {
            stopping = true;
            t = thread;
        }
        if (t != null) {
            t.interrupt();
            try {
                t.join(5_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private void run() {
        boolean failing = false;
        while (!stopping) {
            if ((System.nanoTime() - lastUsed) / 1_000_000 > IDLE_STOP_MS) {
                synchronized (this) {
                    if ((System.nanoTime() - lastUsed) / 1_000_000 > IDLE_STOP_MS) {
                        thread = null;
                        LOG.infof("tokenversion: feed follower for %s stopped (unused for %d min)", shown,
                                IDLE_STOP_MS / 60_000);
                        return;
                    }
                }
            }
            long pause = 0;
            try {
                if (cursor == null) {
                    load();
                } else if (!follow()) {
                    pause = Math.max(50, pollWaitMs / 2); // a poll without wait: again in half the wait
                }
                noteAvailable();
                lastError = null;
                if (failing) {
                    LOG.infof("tokenversion: feed %s answers again; the version map is current", shown);
                    failing = false;
                }
            } catch (FeedException e) {
                failures.incrementAndGet();
                lastError = e.getMessage();
                if (e.unavailable) {
                    noteUnavailable();
                }
                if (e.expired) {
                    cursor = null;
                }
                if (e.busy) {
                    shortPollUntil = System.nanoTime() + SHORT_POLL_MS * 1_000_000;
                }
                if (!failing) {
                    LOG.warnf("tokenversion: feed %s: %s; tokens use the version map while it is fresh, then the "
                            + "claims endpoint, then the last known versions", shown, e.getMessage());
                    failing = true;
                }
                pause = e.configuration ? CONFIG_ERROR_RETRY_MS : e.expired || e.busy ? 0 : RETRY_MS;
            } catch (RuntimeException e) {
                failures.incrementAndGet();
                lastError = e.toString();
                LOG.warnf("tokenversion: feed follower for %s failed: %s", shown, e.toString());
                pause = RETRY_MS;
            }
            if (pause > 0) {
                try {
                    Thread.sleep(pause);
                } catch (InterruptedException e) {
                    if (stopping) {
                        return;
                    }
                }
            }
        }
    }

    /** The full map: every versions page, then the cursor; fresh as of the first page's read. */
    void load() throws FeedException {
        long sent = System.nanoTime();
        JsonNode page = get(versionsUri, null, PAGE_TIMEOUT_MS);
        long fresh = sent + Math.min(asOfNanos(page), System.nanoTime() - sent);
        String first = text(page, "cursor");
        while (true) {
            List<Object[]> rows = parseVersions(page);
            for (Object[] row : rows) {
                map.apply((String) row[0], (String) row[1], (Long) row[2]);
            }
            JsonNode next = page.get("next_page");
            if (next == null || next.isNull()) {
                break;
            }
            if (!next.isTextual()) {
                throw bad("bad next_page");
            }
            page = get(versionsUri, "page=" + enc(next.asText()), PAGE_TIMEOUT_MS);
            if (!first.equals(text(page, "cursor"))) {
                throw bad("versions pages disagree on the cursor");
            }
        }
        cursor = first;
        cursorSafe = safeOf(first);
        have = cursorSafe;
        map.markFresh(fresh);
        loads.incrementAndGet();
    }

    /** One round: events until the answer is complete, fresh as of the first answer's read. False when it was a
     * poll without wait (the provider's long-poll slots were full lately). */
    boolean follow() throws FeedException {
        Long start = null;
        Long fresh = null;
        boolean longPoll = System.nanoTime() - shortPollUntil >= 0;
        while (true) {
            long wait = start == null && longPoll ? pollWaitMs : 0;
            String query = "after=" + enc(cursor) + (start == null ? "" : "&from=" + start) + "&have=" + have
                    + "&wait=" + String.format(Locale.ROOT, "%.3f", wait / 1000.0);
            long sent = System.nanoTime();
            JsonNode answer = get(eventsUri, query, wait + Math.max(2_000, connectTimeoutMs));
            if (fresh == null) {
                fresh = sent + Math.min(asOfNanos(answer), System.nanoTime() - sent);
            }
            String next = text(answer, "cursor");
            long nextSafe = safeOf(next);
            JsonNode lastId = answer.get("last_id");
            JsonNode more = answer.get("more");
            JsonNode events = answer.get("events");
            if (lastId == null || !lastId.canConvertToLong() || more == null || !more.isBoolean()
                    || events == null || !events.isArray() || nextSafe < cursorSafe) {
                throw bad("bad events answer");
            }
            List<Object[]> bumps = new ArrayList<>();
            for (JsonNode e : events) {
                if (!e.isObject() || !e.path("scope").isTextual()) {
                    throw bad("bad event");
                }
                if ("user".equals(e.get("scope").asText())) {
                    JsonNode v = e.get("version");
                    if (!e.path("issuer").isTextual() || !e.path("subject").isTextual() || v == null
                            || !v.canConvertToLong() || v.longValue() < 0) {
                        throw bad("bad user event");
                    }
                    bumps.add(new Object[] {e.get("issuer").asText(), e.get("subject").asText(), v.longValue()});
                }
            }
            for (Object[] b : bumps) { // applied only once the whole answer is known to be well formed
                map.apply((String) b[0], (String) b[1], (Long) b[2]);
            }
            cursor = next;
            cursorSafe = nextSafe;
            have = Math.max(have, Math.max(lastId.longValue(), cursorSafe));
            if (!more.booleanValue()) {
                break;
            }
            start = lastId.longValue();
        }
        map.markFresh(fresh);
        rounds.incrementAndGet();
        return longPoll;
    }

    private JsonNode get(URI base, String query, long requestTimeoutMs) throws FeedException {
        URI uri = query == null ? base : URI.create(base + "?" + query);
        HttpResponse<byte[]> response;
        try {
            response = HttpExchange.get(uri, secret, connectTimeoutMs, requestTimeoutMs,
                    HttpResponse.BodyHandlers.ofByteArray());
        } catch (TimeoutException e) {
            throw new FeedException("timed out", true, false, false);
        } catch (InterruptedException e) {
            throw new FeedException("interrupted", false, false, false);
        } catch (IOException e) {
            throw new FeedException("unreachable: " + HttpExchange.describe(e), true, false, false);
        }
        int status = response.statusCode();
        if (status == 410) {
            throw new FeedException("cursor expired (HTTP 410): loading the versions again", false, true, false);
        }
        if (status >= 500) {
            boolean busy = status == 503 && isBusy(response.body());
            FeedException e = new FeedException("HTTP " + status + (busy ? " (no long-poll slot free: polling "
                    + "without wait for a while)" : ""), !busy, false, false);
            e.busy = busy;
            throw e;
        }
        if (status != 200) {
            // 401: wrong feed secret; 404: a provider without feed/versions; 400: a setting the provider refuses
            throw new FeedException("HTTP " + status + " (check " + MapperConfig.FEED_SECRET + " and the provider's "
                    + "version)", false, false, true);
        }
        byte[] body = response.body();
        if (body == null || body.length > MAX_BODY_BYTES) {
            throw bad("answer empty or too large");
        }
        try {
            JsonNode node = Json.MAPPER.readTree(body);
            if (node == null || !node.isObject()) {
                throw bad("answer is not a JSON object");
            }
            return node;
        } catch (IOException e) {
            throw bad("answer is not JSON");
        }
    }

    /** 503 {@code feed_busy} or {@code busy}: the provider is up but has no long-poll slot free; not an outage. */
    private static boolean isBusy(byte[] body) {
        try {
            JsonNode n = body == null ? null : Json.MAPPER.readTree(body);
            String code = n == null ? "" : n.path("error").asText("");
            return code.equals("feed_busy") || code.equals("busy");
        } catch (IOException e) {
            return false;
        }
    }

    private static List<Object[]> parseVersions(JsonNode page) throws FeedException {
        JsonNode versions = page.get("versions");
        if (versions == null || !versions.isArray()) {
            throw bad("bad versions page");
        }
        List<Object[]> rows = new ArrayList<>(versions.size());
        for (JsonNode row : versions) {
            JsonNode v = row.get("token_version");
            if (!row.path("issuer").isTextual() || !row.path("sub").isTextual() || v == null
                    || !v.canConvertToLong() || !v.isIntegralNumber() || v.longValue() < 0) {
                throw bad("bad versions row");
            }
            rows.add(new Object[] {row.get("issuer").asText(), row.get("sub").asText(), v.longValue()});
        }
        return rows;
    }

    private static long asOfNanos(JsonNode answer) throws FeedException {
        JsonNode a = answer.get("as_of");
        if (a == null || !a.isNumber() || a.doubleValue() < 0 || Double.isNaN(a.doubleValue())) {
            throw bad("bad as_of");
        }
        return (long) (a.doubleValue() * 1e9);
    }

    private static String text(JsonNode node, String field) throws FeedException {
        JsonNode v = node.get(field);
        if (v == null || !v.isTextual()) {
            throw bad("bad " + field);
        }
        return v.asText();
    }

    static long safeOf(String cursor) throws FeedException {
        Matcher m = CURSOR.matcher(cursor);
        if (!m.matches()) {
            throw bad("bad cursor");
        }
        try {
            return Long.parseLong(m.group(1));
        } catch (NumberFormatException e) {
            throw bad("bad cursor");
        }
    }

    private static FeedException bad(String message) {
        return new FeedException(message, false, false, false);
    }

    private static String enc(String s) {
        return URLEncoder.encode(s, StandardCharsets.UTF_8);
    }
}
