package dev.tokenversion.keycloak;

import org.junit.jupiter.api.Test;

import java.net.URI;

import static org.junit.jupiter.api.Assertions.*;

class AfterCommitTest {

    private static OutboundEvent ev(String id, String type, String user, String session, String kc) {
        return new OutboundEvent(id, type, "iss", user, session, kc, 1L);
    }

    @Test
    void oneEventPerTypeUserAndSessionPerRequest() throws Exception {
        try (StubServer stub = new StubServer();
             EventSender sender = new EventSender(new EventSender.Settings(stub.uri("/e"), "s", 300, 500, 10, 10))) {
            stub.answer(200, "{}");
            TokenVersionEventListenerProvider.AfterCommit tx = new TokenVersionEventListenerProvider.AfterCommit(sender);
            tx.add(ev("1", OutboundEvent.USER_CREDENTIALS_CHANGED, "u1", "s1", "UPDATE_CREDENTIAL"));
            tx.add(ev("2", OutboundEvent.USER_CREDENTIALS_CHANGED, "u1", "s1", "UPDATE_PASSWORD"));
            tx.add(ev("3", OutboundEvent.USER_CREDENTIALS_CHANGED, "u2", "s1", "UPDATE_PASSWORD"));
            tx.add(ev("4", OutboundEvent.SESSION_LOGOUT, "u1", "s1", "LOGOUT"));
            assertEquals(3, tx.events.size());
            assertEquals("1", tx.events.get(0).id());
        }
    }

    @Test
    void rollbackSendsNothingAndCommitSends() throws Exception {
        try (StubServer stub = new StubServer();
             EventSender sender = new EventSender(new EventSender.Settings(stub.uri("/e"), "s", 300, 500, 10, 10))) {
            stub.answer(200, "{}");
            TokenVersionEventListenerProvider.AfterCommit rolledBack = new TokenVersionEventListenerProvider.AfterCommit(sender);
            rolledBack.begin();
            rolledBack.add(ev("1", OutboundEvent.USER_DELETED, "u1", null, "DELETE_ACCOUNT"));
            rolledBack.rollback();

            TokenVersionEventListenerProvider.AfterCommit committed = new TokenVersionEventListenerProvider.AfterCommit(sender);
            committed.begin();
            committed.add(ev("2", OutboundEvent.USER_DELETED, "u2", null, "DELETE_ACCOUNT"));
            committed.commit();
            long deadline = System.currentTimeMillis() + 3000;
            while (stub.received.isEmpty() && System.currentTimeMillis() < deadline) {
                Thread.sleep(20);
            }
            Thread.sleep(200);
            assertEquals(1, stub.received.size());
            assertTrue(stub.received.get(0).body().contains("\"u2\""));
        }
    }
}
