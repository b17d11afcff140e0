package dev.tokenversion.keycloak;

import java.util.List;
import java.util.Locale;

/** What the mapper does when the provider cannot be asked and no version is remembered for the user. */
public enum FailurePolicy {
    /** Issue the token without the claim: APIs that require the claim refuse it. */
    OMIT_CLAIM("omit_claim"),
    /** Abort the token request: the client gets an OAuth error answer instead of tokens. */
    FAIL("fail");

    public static final List<String> OPTIONS = List.of(OMIT_CLAIM.value, FAIL.value);

    private final String value;

    FailurePolicy(String value) {
        this.value = value;
    }

    public String value() {
        return value;
    }

    /** Parses a config value; null or blank means the default ({@link #OMIT_CLAIM}). */
    public static FailurePolicy parse(String value) {
        if (value == null || value.isBlank()) {
            return OMIT_CLAIM;
        }
        String v = value.trim().toLowerCase(Locale.ROOT);
        for (FailurePolicy p : values()) {
            if (p.value.equals(v)) {
                return p;
            }
        }
        throw new IllegalArgumentException("unknown failure policy '" + value + "', expected one of " + OPTIONS);
    }
}
