package dev.tokenversion.keycloak;

import org.jboss.logging.Logger;

import java.net.URI;
import java.util.OptionalLong;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;

/**
 * The cached mode's decision at token issue, without Keycloak types (for tests).
 *
 * <ol>
 *   <li><b>The map is fresh</b> (loaded, and its proof at most {@code maxStalenessMs} old): the version comes
 *       from the map (absent = 0), with no network call. A subject this node has never had a claims answer for
 *       is queued for an asynchronous claims call ({@link Provisioner}), so the provider provisions it.</li>
 *   <li><b>Stale or never loaded</b>, and the breaker closed: one claims call with the mapper's short timeouts;
 *       its answer also goes into the map (max).</li>
 *   <li><b>That failed, or the breaker is open</b> (the provider is known to be unavailable): a loaded map answers
 *       anyway. Safe: versions only grow and the map only holds values the provider once had, so a stale map
 *       can put a lower version into a token (refused by APIs), never a version above a revocation's.</li>
 *   <li><b>Never loaded</b> (Keycloak started while the provider was down): the last claims answer this node
 *       remembers, else the failure policy ({@code omit_claim}/{@code fail}), exactly as in direct mode.</li>
 * </ol>
 * Correctness bound: a bump committed at the provider more than {@code maxStalenessMs} before a token is issued is
 * in that token, because the map answers only with a proof younger than that and a claims call sees the
 * committed state. Measured: tests/e2e/test_cached_mapper.py.
 */
public final class CachedResolver {

    private static final Logger LOG = Logger.getLogger(CachedResolver.class);

    private record FollowerKey(URI endpoint, String feedSecret, long connectTimeoutMs) {
    }

    private final ConcurrentMap<FollowerKey, FeedFollower> followers = new ConcurrentHashMap<>();
    private final VersionCache seen;
    private final Provisioner provisioner;
    private final int maxEntries;

    public CachedResolver(VersionCache seen, int maxEntries) {
        this.seen = seen;
        this.provisioner = new Provisioner(seen);
        this.maxEntries = maxEntries;
    }

    /** The follower (and its map) for a mapper's settings; one per claims endpoint, feed secret and timeout. */
    FeedFollower follower(VersionResolver.Settings s) {
        return followers.computeIfAbsent(new FollowerKey(s.endpoint(), s.feedSecret(), s.connectTimeoutMs()),
                k -> new FeedFollower(k.endpoint(), k.feedSecret(), k.connectTimeoutMs(), new VersionMap(maxEntries)));
    }

    Provisioner provisioner() {
        return provisioner;
    }

    /**
     * @param issuer the token's {@code iss} (the map is keyed by it, as the provider's versions are)
     * @throws VersionResolver.VersionUnavailableException under policy {@code fail} with no version to give
     */
    public VersionResolver.Result resolve(String issuer, ClaimsRequest request, VersionResolver.Settings s) {
        if (s.endpoint() == null) {
            return failed(null, "no endpoint configured (" + MapperConfig.ENDPOINT_URL + ")", request, s, null);
        }
        FeedFollower follower = follower(s);
        follower.touch(s.maxStalenessMs());
        VersionMap map = follower.map();
        String seenKey = VersionCache.key(issuer, request.sub(), s.endpoint().toString());
        long now = System.nanoTime();
        if (map.stalenessMs(now) <= s.maxStalenessMs()) {
            return fromMap(map, issuer, request, s, follower, seenKey, VersionResolver.Source.MAP);
        }
        String reason;
        if (follower.providerUnavailable()) {
            reason = "provider unavailable (" + (follower.lastError() == null ? "a recent call failed"
                    : follower.lastError()) + "), claims call skipped";
        } else {
            try {
                long v = ClaimsClient.fetch(s.endpoint(), s.secret(), request, s.connectTimeoutMs(), s.readTimeoutMs());
                follower.noteAvailable();
                seen.remember(seenKey, v);
                return new VersionResolver.Result(OptionalLong.of(map.apply(issuer, request.sub(), v)),
                        VersionResolver.Source.PROVIDER);
            } catch (ClaimsClient.ClaimsException e) {
                if (e.unavailable()) {
                    follower.noteUnavailable();
                }
                reason = e.getMessage();
            }
        }
        if (map.loaded()) {
            LOG.debugf("tokenversion: version map %d ms old and %s; answering from it for user %s",
                    map.stalenessMs(System.nanoTime()), reason, request.sub());
            return fromMap(map, issuer, request, s, follower, seenKey, VersionResolver.Source.STALE_MAP);
        }
        return failed(follower, reason, request, s, seenKey);
    }

    private VersionResolver.Result fromMap(VersionMap map, String issuer, ClaimsRequest request,
                                           VersionResolver.Settings s, FeedFollower follower, String seenKey,
                                           VersionResolver.Source source) {
        if (map.get(issuer, request.sub()).isEmpty() && seen.lookup(seenKey).isEmpty()) {
            provisioner.offer(new Provisioner.Job(seenKey, s, request, follower));
        }
        return new VersionResolver.Result(OptionalLong.of(map.versionOf(issuer, request.sub())), source);
    }

    private VersionResolver.Result failed(FeedFollower follower, String reason, ClaimsRequest request,
                                          VersionResolver.Settings s, String seenKey) {
        String shown = VersionResolver.forLog(s.endpoint());
        OptionalLong remembered = seenKey == null ? OptionalLong.empty() : seen.lookup(seenKey);
        if (remembered.isPresent()) {
            LOG.warnf("tokenversion: version map not loaded and %s at %s; using remembered version %d for user %s",
                    reason, shown, remembered.getAsLong(), request.sub());
            return new VersionResolver.Result(remembered, VersionResolver.Source.REMEMBERED);
        }
        if (follower != null && seenKey != null) {
            // the provider should still learn this subject once it is back
            provisioner.offer(new Provisioner.Job(seenKey, s, request, follower));
        }
        if (s.policy() == FailurePolicy.FAIL) {
            LOG.warnf("tokenversion: version map not loaded and %s at %s; no version for user %s; failure policy "
                    + "'fail': refusing to issue the token", reason, shown, request.sub());
            throw new VersionResolver.VersionUnavailableException("token version unavailable");
        }
        LOG.warnf("tokenversion: version map not loaded and %s at %s; no version for user %s; failure policy "
                + "'omit_claim': token issued without the claim", reason, shown, request.sub());
        return new VersionResolver.Result(OptionalLong.empty(), VersionResolver.Source.NONE);
    }

    /** Stops every follower thread and the provisioner (JVM shutdown, tests). */
    public void stopAll() {
        for (FeedFollower f : followers.values()) {
            f.stop();
        }
        followers.clear();
        provisioner.stop();
    }
}
