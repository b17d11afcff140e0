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

    public static final long DEFAULT_CONNECT_TIMEOUT_MS = 300;
    public static final long DEFAULT_READ_TIMEOUT_MS = 500;
    static final long MAX_TIMEOUT_MS = 60_000;

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
        return new VersionResolver.Settings(endpoint, secret, connect, read, policy);
    }

    /** A configuration parsed once: the secret kept as written, so a vault reference is resolved per use. */
    private record Parsed(VersionResolver.Settings settings, String rawSecret) {
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
            parsed = new Parsed(settings, settings.secret());
            if (PARSED.size() >= MAX_PARSED) {
                PARSED.clear(); // mapper configurations are few; a flood of changes only costs re-parsing
            }
            PARSED.put(copyOf(key), parsed);
        }
        String secret = parsed.rawSecret();
        if (secret == null || secretResolver == null || !secret.startsWith("${")) {
            return parsed.settings();
        }
        VersionResolver.Settings s = parsed.settings();
        return new VersionResolver.Settings(s.endpoint(), secretResolver.apply(secret), s.connectTimeoutMs(),
                s.readTimeoutMs(), s.policy());
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
        if (v < 1 || v > MAX_TIMEOUT_MS) {
            throw new IllegalArgumentException(key + ": must be between 1 and " + MAX_TIMEOUT_MS + " ms");
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
