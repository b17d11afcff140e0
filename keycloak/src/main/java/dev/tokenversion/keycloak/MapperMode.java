package dev.tokenversion.keycloak;

import java.util.List;
import java.util.Locale;

/**
 * How the mapper learns the version at token issue.
 *
 * <ul>
 *   <li>{@code direct}: one claims call per token request (the behaviour before issue 12). The mapper's default
 *       when the key is absent, so that a mapper configured by hand keeps working after the JAR is upgraded.</li>
 *   <li>{@code cached}: an in-memory map of versions on each Keycloak node, kept current by the provider's feed
 *       ({@link FeedFollower}); no network call at issue while the map is provably fresh
 *       ({@link CachedResolver}). What {@code keycloak_setup} configures.</li>
 * </ul>
 */
public enum MapperMode {
    DIRECT("direct"),
    CACHED("cached");

    public static final List<String> OPTIONS = List.of(DIRECT.value, CACHED.value);

    private final String value;

    MapperMode(String value) {
        this.value = value;
    }

    public String value() {
        return value;
    }

    /** Blank means {@link #DIRECT}; anything else unknown is refused. */
    public static MapperMode parse(String raw) {
        if (raw == null || raw.isBlank()) {
            return DIRECT;
        }
        String v = raw.trim().toLowerCase(Locale.ROOT);
        for (MapperMode m : values()) {
            if (m.value.equals(v)) {
                return m;
            }
        }
        throw new IllegalArgumentException("must be one of " + OPTIONS);
    }
}
