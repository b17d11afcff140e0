package dev.tokenversion.keycloak;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.net.URI;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

class EventSenderTest {

    private StubServer stub;

    @BeforeEach
    void setUp() throws Exception {
        stub = new StubServer();
    }

    @AfterEach
    void tearDown() {
        stub.close();
    }

    private static final OutboundEvent EVENT = new OutboundEvent("ev-1", OutboundEvent.USER_LOGOUT,
            "http://127.0.0.1:8080/realms/demo", "u1", null, "ADMIN_USER_LOGOUT", 1L);

    private EventSender sender(URI uri) {
        return new EventSender(new EventSender.Settings(uri, "ev-secret", 300, 500, 10, 100));
    }

    @Test
    void deliversWithSecretAndJson() throws Exception {
        stub.answer(200, "{\"status\":\"ok\"}");
        try (EventSender s = sender(stub.uri("/tokenversion/events"))) {
            Future<EventSender.Outcome> f = s.submit(EVENT);
            assertEquals(EventSender.Outcome.DELIVERED, f.get(5, TimeUnit.SECONDS));
        }
        assertEquals(1, stub.received.size());
        StubServer.Received r = stub.received.get(0);
        assertEquals("/tokenversion/events", r.path());
        assertEquals("ev-secret", r.secret());
        assertEquals("application/json", r.contentType());
        JsonNode n = Json.MAPPER.readTree(r.body());
        assertEquals("user.logout", n.get("type").asText());
        assertEquals("u1", n.get("user_id").asText());
    }

    @Test
    void retriesOnceOn5xx() {
        stub.answer(502, "");
        try (EventSender s = sender(stub.uri("/tokenversion/events"))) {
            assertEquals(EventSender.Outcome.FAILED, s.deliver(EVENT));
        }
        assertEquals(2, stub.received.size());
    }

    @Test
    void neverRetriesOn4xx() {
        stub.answer(400, "{\"error\":\"unknown_event_type\"}");
        try (EventSender s = sender(stub.uri("/tokenversion/events"))) {
            assertEquals(EventSender.Outcome.REFUSED, s.deliver(EVENT));
        }
        assertEquals(1, stub.received.size());
    }

    @Test
    void retriesOnceOnNetworkErrorAndIsBounded() throws Exception {
        URI closed = URI.create("http://127.0.0.1:" + StubServer.closedPort() + "/tokenversion/events");
        try (EventSender s = sender(closed)) {
            long t0 = System.nanoTime();
            assertEquals(EventSender.Outcome.FAILED, s.deliver(EVENT));
            assertTrue((System.nanoTime() - t0) / 1_000_000 < 3000);
        }
    }

    @Test
    void hungProviderTimesOutTwice() {
        stub.hang();
        try (EventSender s = sender(stub.uri("/tokenversion/events"))) {
            long t0 = System.nanoTime();
            assertEquals(EventSender.Outcome.FAILED, s.deliver(EVENT));
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(ms < 3000, "took " + ms);
        }
        assertEquals(2, stub.received.size());
    }

    @Test
    void fullQueueDropsInsteadOfBlocking() {
        stub.hang();
        try (EventSender s = new EventSender(new EventSender.Settings(stub.uri("/e"), null, 300, 500, 10, 1))) {
            int accepted = 0;
            for (int i = 0; i < 10; i++) {
                if (s.submit(EVENT) != null) {
                    accepted++;
                }
            }
            assertTrue(accepted <= 3, "2 workers + 1 queued at most, accepted " + accepted);
        }
    }
}
