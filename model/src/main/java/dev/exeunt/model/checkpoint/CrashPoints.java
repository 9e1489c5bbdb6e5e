package dev.exeunt.model.checkpoint;

import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Named steps of a checkpoint save where a test can make the JVM die abruptly, to prove that every
 * state a crash leaves is recovered ({@link CheckpointStore}). Armed by the system property
 * {@value #PROPERTY}{@code =<step>} or {@code <step>:<n>} (die the n-th time the step is reached, so a
 * test can kill the second save while a first checkpoint exists). Death is {@code Runtime.halt(137)}:
 * no shutdown hooks, no finally blocks, no flushing, as with SIGKILL. Unarmed, a step costs one
 * property lookup per save.
 */
public final class CrashPoints {
    public static final String PROPERTY = "exeunt.test.crashAt";

    /** Save began: nothing of the new checkpoint exists yet. */
    public static final String SAVE_BEGIN = "save-begin";
    /** Some files of the new checkpoint are in the staging directory, others are not. */
    public static final String STAGING_PARTIAL = "staging-partial";
    /** Every file is in the staging directory, none fsynced, no manifest. */
    public static final String STAGING_WRITTEN = "staging-written";
    /** Every file fsynced, no manifest yet. */
    public static final String STAGING_SYNCED = "staging-synced";
    /** The manifest's temp file is written and fsynced but not renamed into place. */
    public static final String MANIFEST_TEMP_WRITTEN = "manifest-temp-written";
    /** The staging directory is complete (manifest in place, directory fsynced); the target is untouched. */
    public static final String STAGING_COMPLETE = "staging-complete";
    /** The old target has been renamed aside; no directory has the target's name. */
    public static final String TARGET_MOVED_ASIDE = "target-moved-aside";
    /** The new checkpoint has the target's name; the old one is still aside. */
    public static final String STAGING_PUBLISHED = "staging-published";
    /** The set-aside copy lost its manifest (so it is incomplete) but its other files remain. */
    public static final String OLD_DISCARDING = "old-discarding";
    /** The save finished. */
    public static final String SAVE_END = "save-end";

    /** Every step of a save, in the order a save reaches them. */
    public static final List<String> SAVE_STEPS = List.of(SAVE_BEGIN, STAGING_PARTIAL, STAGING_WRITTEN, STAGING_SYNCED,
            MANIFEST_TEMP_WRITTEN, STAGING_COMPLETE, TARGET_MOVED_ASIDE, STAGING_PUBLISHED, OLD_DISCARDING, SAVE_END);

    private static final Map<String, Integer> REACHED = new ConcurrentHashMap<>();

    private CrashPoints() {}

    /** Halts the JVM with status 137 if the armed step is {@code step} and this is its armed occurrence. */
    public static void reach(String step) {
        String armed = System.getProperty(PROPERTY);
        if (armed == null || armed.isEmpty()) return;
        int colon = armed.lastIndexOf(':');
        String name = colon < 0 ? armed : armed.substring(0, colon);
        int nth = colon < 0 ? 1 : Integer.parseInt(armed.substring(colon + 1));
        if (!SAVE_STEPS.contains(name)) {
            throw new IllegalArgumentException(PROPERTY + "=" + armed + " names no crash point; known: " + SAVE_STEPS);
        }
        if (name.equals(step) && REACHED.merge(step, 1, Integer::sum) == nth) {
            System.err.println(PROPERTY + ": halting at " + step + " (occurrence " + nth + ")");
            System.err.flush();
            Runtime.getRuntime().halt(137);
        }
    }
}
