package dev.exeunt.tensor.cuda;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Optional;

/**
 * On-disk cache of compiled kernel modules, keyed by (source hash, NVRTC options, NVRTC version) and the target
 * architecture: {@code <dir>/<module>-<sha256 prefix>-<arch>.cubin} (or {@code .ptx} for a {@code compute_XY}
 * target). The directory is {@code -Dexeunt.cuda.cache} or {@code ~/.cache/exeunt/cuda}. Writes go to a temporary
 * file first and are moved into place, so concurrent JVMs never see half a file. Cache failures are never fatal.
 */
final class KernelCache {
    private final Path dir;

    KernelCache(Path dir) {
        this.dir = dir;
    }

    static Path defaultDir() {
        String p = System.getProperty("exeunt.cuda.cache");
        if (p != null && !p.isBlank()) return Path.of(p);
        return Path.of(System.getProperty("user.home"), ".cache", "exeunt", "cuda");
    }

    Path dir() {
        return dir;
    }

    /** Hex SHA-256 (first 32 hex digits) of the source, options and compiler version. */
    static String key(String source, String[] options, String compilerVersion) {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            md.update(source.getBytes(StandardCharsets.UTF_8));
            md.update((byte) 0);
            md.update(String.join("\u0001", options).getBytes(StandardCharsets.UTF_8));
            md.update((byte) 0);
            md.update(compilerVersion.getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(md.digest(), 0, 16);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** {@code sm_90} gives a CUBIN, {@code compute_90} PTX. */
    static String extension(String arch) {
        return arch.startsWith("sm_") ? ".cubin" : ".ptx";
    }

    Path path(String module, String key, String arch) {
        if (!module.matches("\\w+") || !arch.matches("\\w+")) throw new IllegalArgumentException("bad cache name " + module + "/" + arch);
        return dir.resolve(module + "-" + key + "-" + arch + extension(arch));
    }

    Optional<byte[]> read(Path p) {
        try {
            if (!Files.isRegularFile(p)) return Optional.empty();
            byte[] b = Files.readAllBytes(p);
            return b.length == 0 ? Optional.empty() : Optional.of(b);
        } catch (IOException | RuntimeException e) {
            return Optional.empty();
        }
    }

    /** Stores an image; returns false (and leaves no partial file) if the directory is not writable. */
    boolean write(Path p, byte[] image) {
        Path tmp = null;
        try {
            Files.createDirectories(p.getParent());
            tmp = Files.createTempFile(p.getParent(), p.getFileName().toString(), ".tmp");
            Files.write(tmp, image);
            Files.move(tmp, p, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            return true;
        } catch (IOException | RuntimeException e) {
            if (tmp != null) {
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    // best effort
                }
            }
            return false;
        }
    }

    void delete(Path p) {
        try {
            Files.deleteIfExists(p);
        } catch (IOException ignored) {
            // best effort
        }
    }
}
