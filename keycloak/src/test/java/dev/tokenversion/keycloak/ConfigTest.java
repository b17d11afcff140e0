package dev.tokenversion.keycloak;

import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

class ConfigTest {

    @Test
    void mapperDefaults() {
        VersionResolver.Settings s = MapperConfig.parse(Map.of(
                TokenVersionProtocolMapper.CONFIG_ENDPOINT_URL, " http://127.0.0.1:8000/tokenversion/claims "), null);
        assertEquals("http://127.0.0.1:8000/tokenversion/claims", s.endpoint().toString());
        assertNull(s.secret());
        assertEquals(300, s.connectTimeoutMs());
        assertEquals(500, s.readTimeoutMs());
        assertEquals(FailurePolicy.OMIT_CLAIM, s.policy());
    }

    @Test
    void mapperExplicitValuesAndSecretResolution() {
        Map<String, String> c = new HashMap<>();
        c.put(TokenVersionProtocolMapper.CONFIG_ENDPOINT_URL, "https://tv.example/tokenversion/claims");
        c.put(TokenVersionProtocolMapper.CONFIG_SECRET, "${vault.tv}");
        c.put(TokenVersionProtocolMapper.CONFIG_CONNECT_TIMEOUT_MS, "100");
        c.put(TokenVersionProtocolMapper.CONFIG_READ_TIMEOUT_MS, "250");
        c.put(TokenVersionProtocolMapper.CONFIG_FAILURE_POLICY, "fail");
        VersionResolver.Settings s = MapperConfig.parse(c, raw -> raw.equals("${vault.tv}") ? "resolved" : raw);
        assertEquals("resolved", s.secret());
        assertEquals(100, s.connectTimeoutMs());
        assertEquals(250, s.readTimeoutMs());
        assertEquals(FailurePolicy.FAIL, s.policy());
    }

    @Test
    void mapperRejectsBadValues() {
        assertBad(Map.of(TokenVersionProtocolMapper.CONFIG_ENDPOINT_URL, "ftp://x/y"));
        assertBad(Map.of(TokenVersionProtocolMapper.CONFIG_ENDPOINT_URL, "/relative"));
        assertBad(Map.of(TokenVersionProtocolMapper.CONFIG_ENDPOINT_URL, "http://exa mple"));
        assertBad(Map.of(TokenVersionProtocolMapper.CONFIG_CONNECT_TIMEOUT_MS, "abc"));
        assertBad(Map.of(TokenVersionProtocolMapper.CONFIG_READ_TIMEOUT_MS, "0"));
        assertBad(Map.of(TokenVersionProtocolMapper.CONFIG_READ_TIMEOUT_MS, "600000"));
        assertBad(Map.of(TokenVersionProtocolMapper.CONFIG_FAILURE_POLICY, "fail_open"));
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
}
