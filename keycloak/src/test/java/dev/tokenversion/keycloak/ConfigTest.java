package dev.tokenversion.keycloak;

import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

class ConfigTest {

    @Test
    void mapperDefaults() {
        VersionResolver.Settings s = MapperConfig.parse(Map.of(
                MapperConfig.ENDPOINT_URL, " http://127.0.0.1:8000/tokenversion/claims "), null);
        assertEquals("http://127.0.0.1:8000/tokenversion/claims", s.endpoint().toString());
        assertNull(s.secret());
        assertEquals(300, s.connectTimeoutMs());
        assertEquals(500, s.readTimeoutMs());
        assertEquals(FailurePolicy.OMIT_CLAIM, s.policy());
    }

    @Test
    void mapperExplicitValuesAndSecretResolution() {
        Map<String, String> c = new HashMap<>();
        c.put(MapperConfig.ENDPOINT_URL, "https://tv.example/tokenversion/claims");
        c.put(MapperConfig.SECRET, "${vault.tv}");
        c.put(MapperConfig.CONNECT_TIMEOUT_MS, "100");
        c.put(MapperConfig.READ_TIMEOUT_MS, "250");
        c.put(MapperConfig.FAILURE_POLICY, "fail");
        VersionResolver.Settings s = MapperConfig.parse(c, raw -> raw.equals("${vault.tv}") ? "resolved" : raw);
        assertEquals("resolved", s.secret());
        assertEquals(100, s.connectTimeoutMs());
        assertEquals(250, s.readTimeoutMs());
        assertEquals(FailurePolicy.FAIL, s.policy());
    }

    @Test
    void mapperRejectsBadValues() {
        assertBad(Map.of(MapperConfig.ENDPOINT_URL, "ftp://x/y"));
        assertBad(Map.of(MapperConfig.ENDPOINT_URL, "/relative"));
        assertBad(Map.of(MapperConfig.ENDPOINT_URL, "http://exa mple"));
        assertBad(Map.of(MapperConfig.CONNECT_TIMEOUT_MS, "abc"));
        assertBad(Map.of(MapperConfig.READ_TIMEOUT_MS, "0"));
        assertBad(Map.of(MapperConfig.READ_TIMEOUT_MS, "600000"));
        assertBad(Map.of(MapperConfig.FAILURE_POLICY, "fail_open"));
    }

    private static void assertBad(Map<String, String> c) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> MapperConfig.parse(c, null));
        assertTrue(e.getMessage().startsWith("tokenversion."), e.getMessage());
    }

    @Test
    void failurePolicyParsing() {
        assertEquals(FailurePolicy.OMIT_CLAIM, FailurePolicy.parse(null));
        assertEquals(FailurePolicy.OMIT_CLAIM, FailurePolicy.parse(" "));
        assertEquals(FailurePolicy.FAIL, FailurePolicy.parse("FAIL"));
        assertEquals(FailurePolicy.OMIT_CLAIM, FailurePolicy.parse("omit_claim"));
    }

    @Test
    void listenerOptions() {
        assertNull(ListenerConfig.parse(k -> null), "no URL: listener disabled");
        Map<String, String> o = Map.of("url", "http://127.0.0.1:8000/tokenversion/events", "secret", "e1");
        EventSender.Settings s = ListenerConfig.parse(o::get);
        assertEquals("http://127.0.0.1:8000/tokenversion/events", s.url().toString());
        assertEquals("e1", s.secret());
        assertEquals(300, s.connectTimeoutMs());
        assertEquals(1000, s.requestTimeoutMs());
        assertEquals(10_000, s.queueSize());

        Map<String, String> o2 = Map.of("url", "http://h/e", "connectTimeoutMs", "50", "requestTimeoutMs", "70",
                "queueSize", "5");
        EventSender.Settings s2 = ListenerConfig.parse(o2::get);
        assertEquals(50, s2.connectTimeoutMs());
        assertEquals(70, s2.requestTimeoutMs());
        assertEquals(5, s2.queueSize());

        assertThrows(IllegalArgumentException.class, () -> ListenerConfig.parse(Map.of("url", "nope")::get));
        assertThrows(IllegalArgumentException.class,
                () -> ListenerConfig.parse(Map.of("url", "http://h/e", "requestTimeoutMs", "-1")::get));
    }

    @Test
    void mapperConfigIsParsedOncePerConfiguration() {
        Map<String, String> c = new HashMap<>();
        c.put(MapperConfig.ENDPOINT_URL, "https://tv.example/tokenversion/claims?parse-once");
        c.put(MapperConfig.SECRET, "plain-secret");
        VersionResolver.Settings first = MapperConfig.parseOnce(c, raw -> "never-called");
        assertSame(first, MapperConfig.parseOnce(new HashMap<>(c), raw -> "never-called"));
        assertEquals("plain-secret", first.secret());
        c.put(MapperConfig.READ_TIMEOUT_MS, "42");  // a changed configuration is parsed again
        VersionResolver.Settings changed = MapperConfig.parseOnce(c, null);
        assertNotSame(first, changed);
        assertEquals(42, changed.readTimeoutMs());
        assertThrows(IllegalArgumentException.class,
                () -> MapperConfig.parseOnce(Map.of(MapperConfig.READ_TIMEOUT_MS, "0"), null));
    }

    @Test
    void aVaultReferenceIsResolvedAtEachUse() {
        Map<String, String> c = Map.of(MapperConfig.ENDPOINT_URL, "https://tv.example/tokenversion/claims?vault",
                MapperConfig.SECRET, "${vault.tv}");
        assertEquals("one", MapperConfig.parseOnce(c, raw -> "one").secret());
        assertEquals("two", MapperConfig.parseOnce(c, raw -> "two").secret());
    }
}
