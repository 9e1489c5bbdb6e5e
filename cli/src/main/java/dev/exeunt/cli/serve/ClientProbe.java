package dev.exeunt.cli.serve;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.BooleanSupplier;

/**
 * Tells whether the client of an HTTP exchange has closed its connection. The JDK's HttpServer has no
 * disconnect callback and hides the socket, so this asks the kernel: Linux lists every TCP
 * connection in /proc/net/tcp and /proc/net/tcp6 with its state. The server's end of a connection
 * whose client closed (or died) leaves ESTABLISHED (to CLOSE_WAIT on the client's FIN) or vanishes.
 * The connection is found by its two ports (the server's and the client's). Where those files are
 * missing (not Linux) the probe never reports a disconnect. Reads are spaced at least
 * {@link #INTERVAL_NANOS} apart, so probing between tokens costs little.
 */
final class ClientProbe implements BooleanSupplier {
    static final long INTERVAL_NANOS = 50_000_000L;
    private static final List<Path> TABLES = List.of(Path.of("/proc/net/tcp"), Path.of("/proc/net/tcp6"));
    private static final String ESTABLISHED = "01";

    private final int localPort;
    private final int remotePort;
    private long lastCheck;
    private boolean gone;

    ClientProbe(InetSocketAddress local, InetSocketAddress remote) {
        this.localPort = local.getPort();
        this.remotePort = remote.getPort();
    }

    @Override
    public synchronized boolean getAsBoolean() {
        if (gone) return true;
        long now = System.nanoTime();
        if (lastCheck != 0 && now - lastCheck < INTERVAL_NANOS) return false;
        lastCheck = now;
        gone = state() instanceof String s && !s.equals(ESTABLISHED);
        return gone;
    }

    /** The connection's state as the kernel's hex code, "" when no table lists it, or null when the tables cannot be read. */
    private String state() {
        boolean read = false;
        String found = "";
        for (Path table : TABLES) {
            List<String> lines;
            try {
                lines = Files.readAllLines(table);
            } catch (IOException | SecurityException e) {
                continue;
            }
            read = true;
            for (int i = 1; i < lines.size(); i++) {
                // "  sl  local_address rem_address   st ...", addresses as HEXIP:HEXPORT
                String[] f = lines.get(i).trim().split("\\s+");
                if (f.length < 4 || port(f[1]) != localPort || port(f[2]) != remotePort) continue;
                if (f[3].equals(ESTABLISHED)) return ESTABLISHED;
                found = f[3];
            }
        }
        return read ? found : null;
    }

    private static int port(String address) {
        int colon = address.lastIndexOf(':');
        try {
            return colon < 0 ? -1 : Integer.parseInt(address.substring(colon + 1), 16);
        } catch (NumberFormatException e) {
            return -1;
        }
    }
}
