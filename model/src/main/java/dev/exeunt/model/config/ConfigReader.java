package dev.exeunt.model.config;

import com.fasterxml.jackson.databind.JsonNode;
import dev.exeunt.model.io.CheckpointFormatException;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * Typed, bounded reads of one JSON object of a {@code config.json}: every value is checked for its JSON
 * type and range before it is used, so a hostile or mistyped value is refused naming the file and the
 * key instead of being truncated (Jackson's {@code asInt} keeps the low 32 bits) or allocated. It also
 * records which keys were read, so that the keys nobody read can be refused by name.
 */
final class ConfigReader {
    private final Path file;
    private final JsonNode object;
    private final String where; // "" at the top level, "early_exit.exits[0]." inside
    private final Set<String> read = new LinkedHashSet<>();

    ConfigReader(Path file, JsonNode object, String where) throws CheckpointFormatException {
        this.file = file;
        this.where = where;
        if (object == null || !object.isObject()) {
            throw new CheckpointFormatException(file, (where.isEmpty() ? "the file" : "'" + where.substring(0, where.length() - 1) + "'")
                    + " must be a JSON object, got " + kind(object));
        }
        this.object = object;
    }

    Path file() {
        return file;
    }

    JsonNode object() {
        return object;
    }

    /** The value of {@code key}, marked as read; null when absent or JSON null. */
    JsonNode get(String key) {
        read.add(key);
        JsonNode v = object.get(key);
        return v == null || v.isNull() ? null : v;
    }

    boolean has(String key) {
        return get(key) != null;
    }

    CheckpointFormatException error(String key, String message) {
        return new CheckpointFormatException(file, "'" + where + key + "' " + message);
    }

    /** A required integer in [min, max]. */
    int requiredInt(String key, int min, int max, String what) throws CheckpointFormatException {
        if (!has(key)) throw error(key, "is missing; it gives the " + what);
        return optionalInt(key, 0, min, max, what);
    }

    /** An integer in [min, max], or {@code fallback} when absent or null. */
    int optionalInt(String key, int fallback, int min, int max, String what) throws CheckpointFormatException {
        JsonNode v = get(key);
        if (v == null) return fallback;
        return checkedInt(key, v, min, max, what);
    }

    int checkedInt(String key, JsonNode v, int min, int max, String what) throws CheckpointFormatException {
        if (!v.isIntegralNumber()) {
            throw error(key, "must be a JSON integer (the " + what + "), got " + describe(v));
        }
        if (!v.canConvertToInt()) {
            throw error(key, "is " + v.asText() + ", which does not fit in a 32-bit integer (the " + what + " must be at most " + max + ")");
        }
        int i = v.intValue();
        if (i < min || i > max) {
            throw error(key, "is " + i + "; the " + what + " must be in " + min + ".." + max
                    + (i > max ? " (Exeunt's limit; see ModelConfig.MAX_*)" : ""));
        }
        return i;
    }

    /** A finite number in (0, max], or {@code fallback} when absent or null. */
    double positiveNumber(String key, double fallback, double max, String what) throws CheckpointFormatException {
        JsonNode v = get(key);
        if (v == null) return fallback;
        if (!v.isNumber()) throw error(key, "must be a JSON number (the " + what + "), got " + describe(v));
        double d = v.doubleValue();
        if (!Double.isFinite(d) || d <= 0 || d > max) throw error(key, "is " + v.asText() + "; the " + what + " must be in (0, " + max + "]");
        return d;
    }

    boolean bool(String key, boolean fallback) throws CheckpointFormatException {
        JsonNode v = get(key);
        if (v == null) return fallback;
        if (!v.isBoolean()) throw error(key, "must be true or false, got " + describe(v));
        return v.booleanValue();
    }

    String string(String key, String fallback) throws CheckpointFormatException {
        JsonNode v = get(key);
        if (v == null) return fallback;
        if (!v.isTextual()) throw error(key, "must be a JSON string, got " + describe(v));
        return v.textValue();
    }

    /** A string among {@code accepted} (or absent); any other value is refused with {@code why}. */
    void stringAmong(String key, Set<String> accepted, String why) throws CheckpointFormatException {
        String s = string(key, null);
        if (s != null && !accepted.contains(s.toLowerCase(Locale.ROOT))) {
            throw error(key, "is '" + s + "': " + why + " (accepted: " + String.join(", ", accepted.stream().sorted().toList()) + ")");
        }
    }

    /** A boolean that must have the value {@code required} (or be absent): the other value is not implemented. */
    void boolMustBe(String key, boolean required, String why) throws CheckpointFormatException {
        if (bool(key, required) != required) throw error(key, "is " + !required + ": " + why);
    }

    /** Marks keys that do not change the computation as read, whatever their value. */
    void harmless(List<String> keys) {
        read.addAll(keys);
    }

    /** Refuses every key that was never read, listing them and the keys that are understood. */
    void refuseUnread(String context) throws CheckpointFormatException {
        List<String> unknown = object.properties().stream().map(java.util.Map.Entry::getKey).filter(k -> !read.contains(k)).toList();
        if (unknown.isEmpty()) return;
        throw new CheckpointFormatException(file, "unknown key(s) " + String.join(", ", unknown.stream().map(k -> "'" + where + k + "'").toList())
                + " in " + context + ": Exeunt refuses keys it does not understand rather than ignore a setting that may change "
                + "the computation. Understood keys: " + String.join(", ", read.stream().sorted().toList()));
    }

    static String describe(JsonNode v) {
        String text = v.toString();
        return kind(v) + " " + (text.length() > 40 ? text.substring(0, 40) + "..." : text);
    }

    private static String kind(JsonNode v) {
        if (v == null) return "nothing";
        return switch (v.getNodeType()) {
            case NUMBER -> v.isIntegralNumber() ? "integer" : "fraction";
            case STRING -> "string";
            case BOOLEAN -> "boolean";
            case ARRAY -> "array";
            case OBJECT -> "object";
            case NULL -> "null";
            default -> v.getNodeType().name().toLowerCase(Locale.ROOT);
        };
    }
}
