package dev.tokenversion.keycloak;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.OptionalLong;

/**
 * Bounded, thread-safe LRU of the last token version seen per (realm, user, endpoint).
 *
 * <p>Only used as the failure fallback of the protocol mapper: versions only grow, so a remembered value is never
 * newer than the provider's; putting it into a token can only make the API refuse that token, never accept a
 * revoked one. {@link #remember} therefore keeps the larger of the old and the new value, so a slow answer that
 * arrives late cannot lower what is remembered.
 */
public final class VersionCache {

    public static final int DEFAULT_MAX_ENTRIES = 100_000;

    private final int maxEntries;
    private final LinkedHashMap<String, Long> map;

    public VersionCache(int maxEntries) {
        if (maxEntries < 1) {
            throw new IllegalArgumentException("maxEntries must be >= 1");
        }
        this.maxEntries = maxEntries;
        this.map = new LinkedHashMap<>(16, 0.75f, true) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<String, Long> eldest) {
                return size() > VersionCache.this.maxEntries;
            }
        };
    }

    public static String key(String realmId, String userId, String endpoint) {
        return realmId + '\u0000' + userId + '\u0000' + endpoint;
    }

    public synchronized void remember(String key, long version) {
        Long old = map.get(key);
        map.put(key, old == null ? version : Math.max(old, version));
    }

    public synchronized OptionalLong lookup(String key) {
        Long v = map.get(key);
        return v == null ? OptionalLong.empty() : OptionalLong.of(v);
    }

    public synchronized int size() {
        return map.size();
    }

    public int maxEntries() {
        return maxEntries;
    }

    public synchronized void clear() {
        map.clear();
    }
}
