package dev.tokenversion.keycloak;

import org.jboss.logging.Logger;
import org.keycloak.events.Event;
import org.keycloak.events.EventListenerProvider;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.models.AbstractKeycloakTransaction;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;
import org.keycloak.services.Urls;
import org.keycloak.urls.UrlType;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * Maps events while the request is running (the realm, the user and the URLs are at hand), and hands them to the
 * sender only after Keycloak's transaction has committed; a rolled-back operation sends nothing.
 */
public class TokenVersionEventListenerProvider implements EventListenerProvider {

    private static final Logger LOG = Logger.getLogger(TokenVersionEventListenerProvider.class);

    private final KeycloakSession session;
    private final EventSender sender;
    private AfterCommit pending;

    public TokenVersionEventListenerProvider(KeycloakSession session, EventSender sender) {
        this.session = session;
        this.sender = sender;
    }

    @Override
    public void onEvent(Event event) {
        if (sender == null || event == null || event.getType() == null) {
            return;
        }
        Optional<OutboundEvent> out = EventMapper.fromUserEvent(event.getId(), event.getType().name(),
                event.getUserId(), event.getSessionId(), event.getError(), event.getTime());
        out.ifPresent(e -> enqueue(e.withIssuer(issuer(event.getRealmId(), event.getRealmName()))));
    }

    @Override
    public void onEvent(AdminEvent event, boolean includeRepresentation) {
        if (sender == null || event == null || event.getOperationType() == null || event.getError() != null) {
            return;
        }
        String resourceType = event.getResourceTypeAsString();
        EventMapper.UserState state = EventMapper.UserState.UNKNOWN;
        if ("USER".equals(resourceType) && "UPDATE".equals(event.getOperationType().name())) {
            state = userState(event.getRealmId(), event.getResourcePath());
        }
        // The representation is read even when the realm does not store admin event details: it is only used to
        // see a disabled flag (when the user cannot be looked up) or the realm's not-before, never forwarded.
        Optional<OutboundEvent> out = EventMapper.fromAdminEvent(event.getId(), event.getOperationType().name(),
                resourceType, event.getResourcePath(), event.getRepresentation(), state, event.getRealmId(),
                event.getTime());
        out.ifPresent(e -> enqueue(e.withIssuer(issuer(event.getRealmId(), event.getRealmName()))));
    }

    private EventMapper.UserState userState(String realmId, String resourcePath) {
        try {
            if (resourcePath == null || !resourcePath.startsWith("users/")) {
                return EventMapper.UserState.UNKNOWN;
            }
            String userId = resourcePath.substring("users/".length());
            if (userId.isEmpty() || userId.contains("/")) {
                return EventMapper.UserState.UNKNOWN;
            }
            RealmModel realm = session.realms().getRealm(realmId);
            UserModel user = realm == null ? null : session.users().getUserById(realm, userId);
            if (user == null) {
                return EventMapper.UserState.UNKNOWN;
            }
            return user.isEnabled() ? EventMapper.UserState.ENABLED : EventMapper.UserState.DISABLED;
        } catch (RuntimeException e) {
            LOG.debugf("tokenversion: cannot look up user of %s: %s", resourcePath, e.toString());
            return EventMapper.UserState.UNKNOWN;
        }
    }

    /** The realm's issuer as in tokens' iss (frontend URL), or null to let the provider use its default. */
    private String issuer(String realmId, String realmName) {
        try {
            String name = realmName;
            if (name == null && realmId != null) {
                RealmModel realm = session.realms().getRealm(realmId);
                name = realm == null ? null : realm.getName();
            }
            if (name == null) {
                return null;
            }
            return Urls.realmIssuer(session.getContext().getUri(UrlType.FRONTEND).getBaseUri(), name);
        } catch (RuntimeException e) {
            LOG.debugf("tokenversion: cannot compute the issuer: %s", e.toString());
            return null;
        }
    }

    private void enqueue(OutboundEvent event) {
        if (pending == null) {
            pending = new AfterCommit(sender);
            try {
                session.getTransactionManager().enlistAfterCompletion(pending);
            } catch (IllegalStateException e) {
                // the transaction is already over (should not happen for listeners): send right away
                AfterCommit p = pending;
                pending = null;
                p.add(event);
                p.sendAll();
                return;
            }
        }
        pending.add(event);
    }

    @Override
    public void close() {
    }

    static final class AfterCommit extends AbstractKeycloakTransaction {
        private final EventSender sender;
        final List<OutboundEvent> events = new ArrayList<>();

        AfterCommit(EventSender sender) {
            this.sender = sender;
        }

        /**
         * One event per (type, user, session) and request: a password update through the required action fires
         * both UPDATE_CREDENTIAL and the deprecated UPDATE_PASSWORD, which must not revoke twice.
         */
        void add(OutboundEvent e) {
            for (OutboundEvent o : events) {
                if (o.type().equals(e.type()) && java.util.Objects.equals(o.userId(), e.userId())
                        && java.util.Objects.equals(o.sessionId(), e.sessionId())) {
                    return;
                }
            }
            events.add(e);
        }

        @Override
        protected void commitImpl() {
            sendAll();
        }

        void sendAll() {
            for (OutboundEvent e : events) {
                try {
                    sender.submit(e);
                } catch (RuntimeException ex) {
                    LOG.warnf("tokenversion: cannot queue %s (id %s): %s", e.type(), e.id(), ex.toString());
                }
            }
            events.clear();
        }

        @Override
        protected void rollbackImpl() {
            if (!events.isEmpty()) {
                LOG.debugf("tokenversion: transaction rolled back; %d event(s) not sent", events.size());
            }
            events.clear();
        }
    }
}
