package dev.exeunt.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Command-line options: {@code --name value}, {@code --name=value} and boolean {@code --flag}; a
 * {@code --config FILE} (JSON or YAML, keys are option names with '-' or '_') supplies defaults that
 * flags override. Every option a command does not read is reported as unknown.
 */
public final class Args {
    private final Map<String, String> values = new LinkedHashMap<>();
    private final Set<String> used = new HashSet<>();
    private final List<String> positional = new ArrayList<>();
    /** Every value of an option given more than once, in order: {@link #getAll} reads them all, the others the last. */
    private final Map<String, List<String>> repeated = new LinkedHashMap<>();

    public Args(String[] argv, Set<String> booleanFlags) {
        for (int i = 0; i < argv.length; i++) {
            String a = argv[i];
            if (a.startsWith("--")) {
                String key = a.substring(2);
                int eq = key.indexOf('=');
                if (eq >= 0) {
                    put(norm(key.substring(0, eq)), key.substring(eq + 1));
                } else if (booleanFlags.contains(norm(key)) && (i + 1 >= argv.length || !isBool(argv[i + 1]) && !isCount(argv[i + 1]))) {
                    put(norm(key), "true");
                } else {
                    if (i + 1 >= argv.length) throw new UsageException("option --" + key + " needs a value");
                    put(norm(key), argv[++i]);
                }
            } else {
                positional.add(a);
            }
        }
        String config = values.get("config");
        if (config != null) {
            used.add("config");
            loadConfig(Path.of(config));
        }
    }

    private void put(String key, String value) {
        String old = values.put(key, value);
        if (old != null) repeated.computeIfAbsent(key, k -> new ArrayList<>(List.of(old))).add(value);
    }

    /** Every value given for a repeatable option ({@code --input a --input b}), in order; empty when absent. */
    public List<String> getAll(String key) {
        used.add(key);
        if (repeated.containsKey(key)) return List.copyOf(repeated.get(key));
        String v = values.get(key);
        return v == null ? List.of() : List.of(v);
    }

    private static boolean isBool(String s) {
        return s.equals("true") || s.equals("false");
    }

    /** A flag that may stand alone may also take a count ({@code --fill-bubbles} or {@code --fill-bubbles 3}). */
    private static boolean isCount(String s) {
        return s.matches("\\d{1,9}");
    }

    private static String norm(String key) {
        return key.replace('_', '-');
    }

    private void loadConfig(Path file) {
        if (!Files.exists(file)) throw new UsageException("config file " + file + " does not exist");
        String name = file.getFileName().toString();
        ObjectMapper mapper = name.endsWith(".yaml") || name.endsWith(".yml") ? new ObjectMapper(new YAMLFactory()) : new ObjectMapper();
        JsonNode root;
        try {
            root = mapper.readTree(file.toFile());
        } catch (IOException e) {
            throw new UsageException("cannot parse config file " + file + ": " + e.getMessage());
        }
        if (root == null || !root.isObject()) throw new UsageException("config file " + file + " must hold an object of options");
        root.properties().forEach(e -> {
            String key = norm(e.getKey());
            if (values.containsKey(key)) return; // flags win
            JsonNode v = e.getValue();
            String s;
            if (v.isArray()) {
                List<String> parts = new ArrayList<>();
                v.forEach(x -> parts.add(x.asText()));
                s = String.join(",", parts);
            } else {
                s = v.asText();
            }
            values.put(key, s);
        });
    }

    public List<String> positional() {
        return positional;
    }

    public boolean has(String key) {
        used.add(key);
        return values.containsKey(key);
    }

    public String get(String key, String def) {
        used.add(key);
        return values.getOrDefault(key, def);
    }

    public String require(String key, String what) {
        used.add(key);
        String v = values.get(key);
        if (v == null) throw new UsageException("missing --" + key + " (" + what + ")");
        return v;
    }

    public int getInt(String key, int def) {
        String v = get(key, null);
        if (v == null) return def;
        try {
            return Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw new UsageException("--" + key + " expects an integer, got '" + v + "'");
        }
    }

    public long getLong(String key, long def) {
        String v = get(key, null);
        if (v == null) return def;
        try {
            return Long.parseLong(v.trim());
        } catch (NumberFormatException e) {
            throw new UsageException("--" + key + " expects an integer, got '" + v + "'");
        }
    }

    public double getDouble(String key, double def) {
        String v = get(key, null);
        if (v == null) return def;
        try {
            return Double.parseDouble(v.trim());
        } catch (NumberFormatException e) {
            throw new UsageException("--" + key + " expects a number, got '" + v + "'");
        }
    }

    public boolean getBool(String key, boolean def) {
        String v = get(key, null);
        if (v == null) return def;
        if (isBool(v.trim())) return Boolean.parseBoolean(v.trim());
        throw new UsageException("--" + key + " expects true or false, got '" + v + "'");
    }

    /** A comma-separated list of integers; an empty string is an empty list. */
    public int[] getInts(String key, int[] def) {
        String v = get(key, null);
        if (v == null) return def;
        if (v.isBlank()) return new int[0];
        try {
            return java.util.Arrays.stream(v.split(",")).map(String::trim).filter(x -> !x.isEmpty()).mapToInt(Integer::parseInt).toArray();
        } catch (NumberFormatException e) {
            throw new UsageException("--" + key + " expects a comma-separated list of integers, got '" + v + "'");
        }
    }

    /** Declares options read later (so {@link #checkAllUsed} can run before slow work). */
    public void allow(String... keys) {
        used.addAll(java.util.List.of(keys));
    }

    /** Fails naming any option that no code asked for (a typo should not be silently ignored). */
    public void checkAllUsed() {
        for (String k : values.keySet()) {
            if (used.contains(k)) continue;
            String near = nearest(k);
            throw new UsageException("unknown option --" + k + (near == null ? "" : " (did you mean --" + near + "?)"));
        }
    }

    /** The option this command knows that {@code k} is most likely a typo of (an edit or two away, or a prefix), or null. */
    private String nearest(String k) {
        String best = null;
        int bestDistance = Integer.MAX_VALUE;
        for (String u : used) {
            int d = u.startsWith(k) || k.startsWith(u) ? 1 : editDistance(k, u);
            if (d < bestDistance || (d == bestDistance && best != null && u.compareTo(best) < 0)) {
                best = u;
                bestDistance = d;
            }
        }
        return bestDistance <= Math.max(2, k.length() / 4) ? best : null;
    }

    private static int editDistance(String a, String b) {
        int[] prev = new int[b.length() + 1], cur = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) prev[j] = j;
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i;
            for (int j = 1; j <= b.length(); j++) {
                cur[j] = Math.min(Math.min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1));
            }
            int[] t = prev;
            prev = cur;
            cur = t;
        }
        return prev[b.length()];
    }

    /** A usage error: printed with the command's help, exit code 2. */
    public static final class UsageException extends RuntimeException {
        public UsageException(String message) {
            super(message);
        }
    }
}
