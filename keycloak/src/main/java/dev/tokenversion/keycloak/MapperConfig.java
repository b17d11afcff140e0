package dev.tokenversion.keycloak;

import java.net.URI;
import java.net.URISyntaxException;
import java.util.Collections;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.function.UnaryOperator;

/**
 * The protocol mapper's config: its keys, their defaults and their parsing, in one place (pure, for tests).
 * The mapper's UI ({@link TokenVersionProtocolMapper#getConfigProperties()}), its validation and the
 * resolver all read the keys from here.
 *
 * <p>{@link #parseOnce} parses a mapper configuration once and reuses the result for every later token issued
 * under the same configuration (a changed configuration is a new entry); only a vault reference in the secret
 * is resolved again at each use, so a rotated vault secret is picked up at once.
 */
public final class MapperConfig {

    public static final String ENDPOINT_URL = "tokenversion.endpoint.url";
    public static final String SECRET = "tokenversion.secret";
    public static final String CONNECT_TIMEOUT_MS = "tokenversion.connect.timeout.ms";
    public static final String READ_TIMEOUT_MS = "tokenversion.read.timeout.ms";
    public static final String FAILURE_POLICY = "tokenversion.failure.policy";
    /** {@code direct} (default when absent) or {@code cached} ({@link MapperMode}). */
    public static final String MODE = "tokenversion.mode";
    /** Cached mode: the secret of the provider's feed (one of its {@code TOKENVERSION_FEED_SECRETS}). */
    public static final String FEED_SECRET = "tokenversion.feed.secret";
    /** Cached mode: how old the map's freshness proof may be for the map to answer alone. */
    public static final String MAX_STALENESS_MS = "tokenversion.max.staleness.ms";

    public static final long DEFAULT_CONNECT_TIMEOUT_MS = 300;
    public static final long DEFAULT_READ_TIMEOUT_MS = 500;
    static final long MAX_TIMEOUT_MS = 60_000;
    public static final long DEFAULT_MAX_STALENESS_MS = 2_000;
    static final long MIN_STALENESS_MS = 200;
    static final long MAX_STALENESS_LIMIT_MS = 600_000;

    private MapperConfig() {
    }

    /**
     * @param secretResolver turns the stored secret (maybe a {@code ${vault.key}} reference) into the secret
     * @throws IllegalArgumentException with a message naming the bad key
     */
    public static VersionResolver.Settings parse(Map<String, String> config, UnaryOperator<String> secretResolver) {
        String rawUrl = trimToNull(config.get(ENDPOINT_URL));
        URI endpoint = rawUrl == null ? null : parseUrl(rawUrl);
        String secret = trimToNull(config.get(SECRET));
        if (secret != null && secretResolver != null) {
            secret = secretResolver.apply(secret);
        }
        long connect = parseTimeout(config, CONNECT_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS);
        long read = parseTimeout(config, READ_TIMEOUT_MS, DEFAULT_READ_TIMEOUT_MS);
        FailurePolicy policy;
        try {
            policy = FailurePolicy.parse(config.get(FAILURE_POLICY));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(FAILURE_POLICY + ": " + e.getMessage());
        }
        MapperMode mode;
        try {
            mode = MapperMode.parse(config.get(MODE));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(MODE + ": " + e.getMessage());
        }
        String feedSecret = trimToNull(config.get(FEED_SECRET));
        if (feedSecret != null && secretResolver != null) {
            feedSecret = secretResolver.apply(feedSecret);
        }
        long maxStaleness = parseRange(config, MAX_STALENESS_MS, DEFAULT_MAX_STALENESS_MS, MIN_STALENESS_MS,
                MAX_STALENESS_LIMIT_MS);
        if (mode == MapperMode.CACHED) {
            if (feedSecret == null) {
                throw new IllegalArgumentException(FEED_SECRET + ": required in cached mode (one of the provider's "
                        + "TOKENVERSION_FEED_SECRETS)");
            }
            if (endpoint != null && (endpoint.getRawPath() == null || !endpoint.getRawPath().endsWith("/claims")
                    || endpoint.getRawQuery() != null)) {
                throw new IllegalArgumentException(ENDPOINT_URL + ": in cached mode it must end in /claims "
                        + "(the feed is found next to it, at feed/versions and feed/events)");
            }
        }
        return new VersionResolver.Settings(endpoint, secret, connect, read, policy, mode, feedSecret, maxStaleness);
    }

    /** A configuration parsed once: the secrets kept as written, so a vault reference is resolved per use. */
    private record Parsed(VersionResolver.Settings settings, String rawSecret, String rawFeedSecret) {
    }

    static final int MAX_PARSED = 256;
    private static final ConcurrentMap<Map<String, String>, Parsed> PARSED = new ConcurrentHashMap<>();

    /**
     * {@link #parse} for the mapper at token issue: parsed once per distinct configuration, then reused.
     *
     * @throws IllegalArgumentException as {@link #parse} (a bad configuration is not remembered)
     */
    public static VersionResolver.Settings parseOnce(Map<String, String> config, UnaryOperator<String> secretResolver) {
        Map<String, String> key = config == null ? Map.of() : config;
        Parsed parsed = PARSED.get(key);
        if (parsed == null) {
            VersionResolver.Settings settings = parse(key, null);
            parsed = new Parsed(settings, settings.secret(), settings.feedSecret());
            if (PARSED.size() >= MAX_PARSED) {
                PARSED.clear(); // mapper configurations are few; a flood of changes only costs re-parsing
            }
            PARSED.put(copyOf(key), parsed);
        }
        String secret = parsed.rawSecret();
        String feedSecret = parsed.rawFeedSecret();
        boolean vaultSecret = secret != null && secret.startsWith("${");
        boolean vaultFeedSecret = feedSecret != null && feedSecret.startsWith("${");
        if (secretResolver == null || !(vaultSecret || vaultFeedSecret)) {
            return parsed.settings();
        }
        VersionResolver.Settings s = parsed.settings();
        return new VersionResolver.Settings(s.endpoint(), vaultSecret ? secretResolver.apply(secret) : secret,
                s.connectTimeoutMs(), s.readTimeoutMs(), s.policy(), s.mode(),
                vaultFeedSecret ? secretResolver.apply(feedSecret) : feedSecret, s.maxStalenessMs());
    }

    /** How many configurations are remembered (for tests). */
    static int parsedCount() {
        return PARSED.size();
    }

    private static Map<String, String> copyOf(Map<String, String> config) {
        return Collections.unmodifiableMap(new HashMap<>(config)); // Keycloak's model map may change later
    }

    static URI parseUrl(String raw) {
        try {
            URI uri = new URI(raw);
            String scheme = uri.getScheme();
            if (scheme == null || !(scheme.equalsIgnoreCase("http") || scheme.equalsIgnoreCase("https"))
                    || uri.getHost() == null) {
                throw new IllegalArgumentException(ENDPOINT_URL
                        + ": must be an absolute http(s) URL");
            }
            return uri;
        } catch (URISyntaxException e) {
            throw new IllegalArgumentException(ENDPOINT_URL + ": not a valid URL");
        }
    }

    static long parseTimeout(Map<String, String> config, String key, long dflt) {
        return parseRange(config, key, dflt, 1, MAX_TIMEOUT_MS);
    }

    static long parseRange(Map<String, String> config, String key, long dflt, long low, long high) {
        String raw = trimToNull(config.get(key));
        if (raw == null) {
            return dflt;
        }
        long v;
        try {
            v = Long.parseLong(raw);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(key + ": not an integer number of milliseconds");
        }
        if (v < low || v > high) {
            throw new IllegalArgumentException(key + ": must be between " + low + " and " + high + " ms");
        }
        return v;
    }

    static String trimToNull(String s) {
        if (s == null) {
            return null;
        }
        String t = s.trim();
        return t.isEmpty() ? null : t;
    }
}
