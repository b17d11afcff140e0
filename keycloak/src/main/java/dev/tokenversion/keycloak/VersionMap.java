package dev.tokenversion.keycloak;

import java.util.OptionalLong;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The cached mode's map of versions on one Keycloak node: (issuer, subject) to version, for every subject above 0
 * (absent means 0: never bumped), and the instant up to which it is proven complete.
 *
 * <p>Two rules make it safe to answer from:
 * <ul>
 *   <li><b>Versions never go down.</b> {@link #apply} keeps the larger value, so a late or replayed answer
 *       cannot lower what is stored. A lower version in a token can only get it refused, never accepted.</li>
 *   <li><b>Freshness is proven, not assumed.</b> {@link #markFresh} is called with an instant (this JVM's
 *       {@link System#nanoTime()}) before which every bump committed at the provider has been applied; it only
 *       moves forward. The follower derives it from the feed's {@code as_of} without comparing clocks.</li>
 * </ul>
 * Bounded: past {@code maxEntries} subjects it stops claiming freshness (the mapper asks the provider, as in
 * direct mode), rather than grow without limit or answer from a map that dropped a version.
 */
public final class VersionMap {

    public static final int DEFAULT_MAX_ENTRIES = 2_000_000;

    private final ConcurrentHashMap<String, Long> versions = new ConcurrentHashMap<>();
    private final int maxEntries;
    private final Object freshLock = new Object();
    private volatile boolean loaded;
    private volatile long freshAt;

    public VersionMap(int maxEntries) {
        if (maxEntries < 1) {
            throw new IllegalArgumentException("maxEntries must be >= 1");
        }
        this.maxEntries = maxEntries;
    }

    static String key(String issuer, String subject) {
        return issuer + '\u0000' + subject;
    }

    /** Stores {@code version} unless a larger one is stored; returns what is stored now. Version 0 is not stored
     * (absent means 0), which keeps the map to the subjects ever bumped. */
    public long apply(String issuer, String subject, long version) {
        if (version <= 0) {
            return get(issuer, subject).orElse(0);
        }
        String key = key(issuer, subject);
        if (versions.size() >= maxEntries && !versions.containsKey(key)) {
            overflowed = true;
            return version;
        }
        return versions.merge(key, version, Math::max);
    }

    private volatile boolean overflowed;

    public OptionalLong get(String issuer, String subject) {
        Long v = versions.get(key(issuer, subject));
        return v == null ? OptionalLong.empty() : OptionalLong.of(v);
    }

    /** The version to put into a token: the stored one, else 0 (never bumped). */
    public long versionOf(String issuer, String subject) {
        return get(issuer, subject).orElse(0);
    }

    /** Every bump committed before {@code instantNanos} ({@link System#nanoTime()}) is applied. */
    public void markFresh(long instantNanos) {
        synchronized (freshLock) {
            if (!loaded || instantNanos - freshAt > 0) {
                freshAt = instantNanos;
            }
            loaded = true;
        }
    }

    /** True once a complete load of the provider's versions has been applied: absent then means 0. */
    public boolean loaded() {
        return loaded && !overflowed;
    }

    public boolean overflowed() {
        return overflowed;
    }

    /** How old the freshness proof is at {@code nowNanos}, in ms; {@link Long#MAX_VALUE} if never loaded. */
    public long stalenessMs(long nowNanos) {
        if (!loaded()) {
            return Long.MAX_VALUE;
        }
        return Math.max(0, (nowNanos - freshAt) / 1_000_000);
    }

    public int size() {
        return versions.size();
    }
}
