package dev.tokenversion.keycloak;

import org.jboss.logging.Logger;
import org.keycloak.Config;
import org.keycloak.events.EventListenerProvider;
import org.keycloak.events.EventListenerProviderFactory;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.provider.ProviderConfigurationBuilder;

import java.util.List;

/**
 * Event listener {@code tokenversion}: enable it per realm ({@code eventsListeners}); configure it with SPI
 * options, e.g. {@code --spi-events-listener--tokenversion--url=...} or
 * {@code KC_SPI_EVENTS_LISTENER__TOKENVERSION__URL=...}.
 */
public class TokenVersionEventListenerProviderFactory implements EventListenerProviderFactory {

    public static final String PROVIDER_ID = "tokenversion";

    private static final Logger LOG = Logger.getLogger(TokenVersionEventListenerProviderFactory.class);

    private volatile EventSender sender;

    @Override
    public EventListenerProvider create(KeycloakSession session) {
        return new TokenVersionEventListenerProvider(session, sender);
    }

    @Override
    public void init(Config.Scope config) {
        EventSender.Settings settings = ListenerConfig.parse(config::get);
        if (settings == null) {
            LOG.warn("tokenversion: event listener has no URL (spi-events-listener--tokenversion--url / "
                    + "KC_SPI_EVENTS_LISTENER__TOKENVERSION__URL); realms that enable it send nothing");
            return;
        }
        if (settings.secret() == null) {
            LOG.warn("tokenversion: event listener has no secret (spi-events-listener--tokenversion--secret); "
                    + "the provider will answer 401");
        }
        sender = new EventSender(settings);
        LOG.infof("tokenversion: event listener sends to %s (connect %d ms, request %d ms)",
                VersionResolver.forLog(settings.url()), settings.connectTimeoutMs(), settings.requestTimeoutMs());
    }

    @Override
    public void postInit(KeycloakSessionFactory factory) {
    }

    @Override
    public void close() {
        EventSender s = sender;
        sender = null;
        if (s != null) {
            s.close();
        }
    }

    @Override
    public String getId() {
        return PROVIDER_ID;
    }

    @Override
    public List<ProviderConfigProperty> getConfigMetadata() {
        return ProviderConfigurationBuilder.create()
                .property().name(ListenerConfig.OPT_URL).type(ProviderConfigProperty.STRING_TYPE)
                    .helpText("Full URL of the provider's events endpoint, e.g. http://127.0.0.1:8000/tokenversion/events")
                    .add()
                .property().name(ListenerConfig.OPT_SECRET).type(ProviderConfigProperty.PASSWORD)
                    .helpText("Sent as X-TokenVersion-Secret; one of the provider's TOKENVERSION_EVENT_SECRETS")
                    .secret(true)
                    .add()
                .property().name(ListenerConfig.OPT_CONNECT_TIMEOUT_MS).type(ProviderConfigProperty.INTEGER_TYPE)
                    .helpText("Connect timeout in milliseconds")
                    .defaultValue(ListenerConfig.DEFAULT_CONNECT_TIMEOUT_MS)
                    .add()
                .property().name(ListenerConfig.OPT_REQUEST_TIMEOUT_MS).type(ProviderConfigProperty.INTEGER_TYPE)
                    .helpText("Request timeout in milliseconds (per attempt; one retry on network error or 5xx)")
                    .defaultValue(ListenerConfig.DEFAULT_REQUEST_TIMEOUT_MS)
                    .add()
                .property().name(ListenerConfig.OPT_QUEUE_SIZE).type(ProviderConfigProperty.INTEGER_TYPE)
                    .helpText("Events waiting for delivery at most; more are dropped and logged")
                    .defaultValue(ListenerConfig.DEFAULT_QUEUE_SIZE)
                    .add()
                .build();
    }
}
