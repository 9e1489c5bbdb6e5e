package dev.exeunt.model.checkpoint;

import dev.exeunt.model.io.CheckpointFormatException;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * Publishes checkpoint directories so that a crash at any instruction leaves a run that resumes from
 * its newest complete checkpoint, and recovers whatever a crash left. The one owner of staging,
 * publishing and recovery for {@code train} and {@code tune}.
 *
 * <p>Three directories take part: the target {@code <out>}, the staging directory {@code <out>.saving}
 * and the set-aside copy {@code <out>.old}. A directory is a <em>complete</em> checkpoint when its
 * {@link CheckpointManifest} parses and every file it lists has the listed size. A target without a
 * manifest but with {@code config.json} is a checkpoint written before manifests existed (or a model
 * someone gave): it counts as complete, generation 0. Copies are ordered by the manifest's generation
 * (one more than the copy a save replaces), which is the order the saves happened in; for training it
 * is also the order of their iterations.
 *
 * <p>A save ({@link #beginStaging()}, the caller writes its files, {@link #publish}) and the state a
 * crash at each step leaves (the step names are {@link CrashPoints}' and the crash test kills at each):
 * <ol>
 * <li>{@code save-begin}: recovery runs first (so neither {@code .saving} nor {@code .old} exist), then an
 *     empty {@code .saving} is created. Crash: {@code <out>} as before, maybe an empty {@code .saving}.
 * <li>{@code staging-partial}, {@code staging-written}: files written into {@code .saving};
 *     {@code staging-synced}: each fsynced; {@code manifest-temp-written}: the manifest's temp file
 *     written and fsynced. Crash: {@code .saving} has no manifest, so it is incomplete.
 * <li>{@code staging-complete}: the manifest renamed into place and {@code .saving} fsynced. Crash:
 *     two complete copies, {@code .saving} the newer.
 * <li>{@code target-moved-aside}: {@code <out>} renamed to {@code .old}, parent fsynced. Crash: no
 *     {@code <out>}; {@code .saving} (newer) and {@code .old} complete.
 * <li>{@code staging-published}: {@code .saving} renamed to {@code <out>}, parent fsynced. Crash: new
 *     {@code <out>}, old {@code .old}.
 * <li>{@code old-discarding}: {@code .old}'s manifest deleted first (so it can never again look
 *     complete), then its files and itself. Crash: {@code .old} incomplete.
 * <li>{@code save-end}: only {@code <out>}.
 * </ol>
 * At the first save {@code <out>} may be absent or hold only the run's logs (written before any
 * checkpoint); it is moved aside and discarded in the same way.
 *
 * <p>Recovery ({@link #recover()}), run before a run decides anything: it picks the complete copy with
 * the highest generation among the three; if that is not {@code <out>}, it moves {@code <out>} (older,
 * incomplete or absent) into the free slot and renames the newest copy to {@code <out>}, passing through
 * the states of steps 4 to 6, so a crash during recovery is recovered in turn. It then discards every
 * other copy: they are incomplete or older, so the only complete copy is never deleted. With no complete
 * copy it discards {@code .saving} and {@code .old} (incomplete by definition) and leaves {@code <out>}
 * alone; a damaged {@code <out>} (a manifest that does not match its files) is then an error, never a
 * silent fresh start. Finally, at the start of a run (not when a save begins), it truncates each log in
 * {@code <out>} to the length its manifest records: lines appended after the checkpoint belong to
 * iterations the resumed run repeats.
 *
 * <p>Recovery refuses to move a target that holds files other than a checkpoint or the run's logs (a
 * directory someone chose by mistake), and to discard a {@code .saving}/{@code .old} with
 * subdirectories: those are not ours. Files added to {@code <out>} after a save (not in its manifest)
 * do not survive the next save.
 */
public final class CheckpointStore {
    private final Path target;
    private final Path staging;
    private final Path previous;
    private final Set<String> logs;

    /** What {@link #recover()} found: the manifest of the checkpoint now in the target (empty if none or legacy), and what it did. */
    public record Recovery(Optional<CheckpointManifest> checkpoint, List<String> actions) {}

    /**
     * @param target the output directory
     * @param logs names of the append-only logs the run keeps in the target (they may exist before the
     *             first checkpoint, and are truncated on recovery to the checkpoint's length)
     */
    public CheckpointStore(Path target, Set<String> logs) {
        this.target = target.toAbsolutePath().normalize();
        this.staging = this.target.resolveSibling(this.target.getFileName() + ".saving");
        this.previous = this.target.resolveSibling(this.target.getFileName() + ".old");
        this.logs = Set.copyOf(logs);
    }

    public Path target() {
        return target;
    }

    public Path staging() {
        return staging;
    }

    public Path previous() {
        return previous;
    }

    private enum State { ABSENT, INCOMPLETE, DAMAGED, LEGACY, COMPLETE }

    private record Copy(Path dir, State state, CheckpointManifest manifest, String problem) {
        boolean complete() {
            return state == State.COMPLETE || state == State.LEGACY;
        }

        long generation() {
            return manifest == null ? 0 : manifest.generation();
        }
    }

    private Copy inspect(Path dir) throws IOException {
        if (!Files.exists(dir)) return new Copy(dir, State.ABSENT, null, null);
        if (!Files.isDirectory(dir)) throw new IOException(dir + " is a file, not a checkpoint directory; move it away");
        CheckpointManifest m;
        try {
            m = CheckpointManifest.read(dir).orElse(null);
        } catch (CheckpointFormatException e) {
            return new Copy(dir, State.DAMAGED, null, e.getMessage());
        }
        if (m == null) {
            boolean legacy = dir.equals(target) && Files.isRegularFile(dir.resolve(ModelCheckpoint.CONFIG));
            return new Copy(dir, legacy ? State.LEGACY : State.INCOMPLETE, null, null);
        }
        String problem = m.missingOrShort(dir);
        return problem == null ? new Copy(dir, State.COMPLETE, m, null) : new Copy(dir, State.DAMAGED, m, problem);
    }

    /**
     * What a run calls on start: finishes or undoes whatever an interrupted save left (see the class
     * comment) so that the target holds the newest complete checkpoint, if there is one, and neither
     * {@code .saving} nor {@code .old} exists; then cuts the logs back to that checkpoint. Idempotent and
     * cheap when there is nothing to do (it reads the manifest and file sizes). Not for the middle of a
     * run: the lines logged since the last save would be cut.
     */
    public Recovery recover() throws IOException {
        Recovery r = settle();
        if (r.checkpoint().isPresent()) truncateLogs(r.checkpoint().get());
        return r;
    }

    /** Recovery without touching the logs. */
    private Recovery settle() throws IOException {
        List<String> actions = new ArrayList<>();
        Copy t = inspect(target), s = inspect(staging), o = inspect(previous);
        Copy best = null;
        for (Copy c : List.of(t, s, o)) {
            if (c.complete() && (best == null || c.generation() > best.generation())) best = c;
        }
        if (best == null) {
            discard(staging, actions);
            discard(previous, actions);
            if (t.state() == State.DAMAGED) {
                throw new CheckpointFormatException(target, "damaged checkpoint (" + t.problem() + ") and no complete copy in "
                        + staging.getFileName() + " or " + previous.getFileName() + " to recover from");
            }
            return new Recovery(Optional.empty(), actions);
        }
        if (best != t) {
            if (t.state() == State.INCOMPLETE && !holdsOnlyLogs(target)) {
                throw new IOException(best.dir() + " holds a complete checkpoint to recover, but " + target + " holds files "
                        + "that are not an Exeunt checkpoint; move one of them away");
            }
            actions.add("recovered the checkpoint of iteration " + best.manifest().iteration() + " from " + best.dir().getFileName()
                    + " (a save was interrupted)");
            promote(best.dir(), best.dir().equals(staging) ? previous : staging, actions);
        }
        discard(staging, actions);
        discard(previous, actions);
        return new Recovery(Optional.ofNullable(best.manifest()), actions);
    }

    /**
     * Starts a save: recovers (leaving the logs alone), checks that the target may be replaced, and
     * returns a new empty staging directory for the caller to write the checkpoint's files into.
     */
    public Path beginStaging() throws IOException {
        CrashPoints.reach(CrashPoints.SAVE_BEGIN);
        settle();
        requireReplaceable();
        Files.createDirectories(staging);
        return staging;
    }

    /**
     * Makes the staged files the target: fsyncs each, writes the manifest last, then swaps the
     * directories (steps 2 to 7 of the class comment). {@code iteration} is recorded in the manifest.
     */
    public CheckpointManifest publish(int iteration) throws IOException {
        if (!Files.isDirectory(staging)) throw new IllegalStateException("publish without beginStaging: " + staging + " does not exist");
        CrashPoints.reach(CrashPoints.STAGING_WRITTEN);
        try (var entries = Files.list(staging)) {
            for (Path p : entries.toList()) if (Files.isRegularFile(p)) Fsync.file(p);
        }
        CrashPoints.reach(CrashPoints.STAGING_SYNCED);
        Copy t = inspect(target);
        long generation = (t.complete() ? t.generation() : 0) + 1;
        var manifest = CheckpointManifest.describe(staging, generation, iteration, logs);
        manifest.write(staging);
        CrashPoints.reach(CrashPoints.STAGING_COMPLETE);
        promote(staging, previous, new ArrayList<>());
        CrashPoints.reach(CrashPoints.SAVE_END);
        return manifest;
    }

    /** Refuses (with the reason) when publishing would replace a directory that is neither a checkpoint nor this run's logs. */
    public void requireReplaceable() throws IOException {
        Copy t = inspect(target);
        if (t.state() == State.DAMAGED) throw new CheckpointFormatException(target, "damaged checkpoint: " + t.problem());
        if (t.state() == State.INCOMPLETE && !holdsOnlyLogs(target)) {
            throw new IOException("output directory " + target + " is not empty and holds no Exeunt checkpoint; "
                    + "choose a new directory (a save replaces the directory's contents)");
        }
    }

    /** Renames {@code newest} onto the target, moving the target (if any) to {@code aside} first, then discards {@code aside}. */
    private void promote(Path newest, Path aside, List<String> actions) throws IOException {
        Path parent = target.getParent();
        discard(aside, actions);
        if (Files.exists(target)) {
            Files.move(target, aside, StandardCopyOption.ATOMIC_MOVE);
            Fsync.directory(parent);
            CrashPoints.reach(CrashPoints.TARGET_MOVED_ASIDE);
        }
        Files.move(newest, target, StandardCopyOption.ATOMIC_MOVE);
        Fsync.directory(parent);
        CrashPoints.reach(CrashPoints.STAGING_PUBLISHED);
        discard(aside, actions);
    }

    /** Deletes a staging or set-aside directory, manifest first so that a crash midway leaves it incomplete. */
    private void discard(Path dir, List<String> actions) throws IOException {
        if (!Files.exists(dir)) return;
        if (!Files.isDirectory(dir)) throw new IOException(dir + " is a file where a checkpoint directory is kept; move it away");
        List<Path> entries;
        try (var s = Files.list(dir)) {
            entries = s.toList();
        }
        for (Path p : entries) {
            if (Files.isDirectory(p)) {
                throw new IOException(dir + " holds the subdirectory " + p.getFileName() + ", so it is not an Exeunt checkpoint "
                        + "directory; move it away");
            }
        }
        if (Files.deleteIfExists(dir.resolve(CheckpointManifest.FILE))) Fsync.directory(dir);
        CrashPoints.reach(CrashPoints.OLD_DISCARDING);
        for (Path p : entries) Files.deleteIfExists(p);
        Files.delete(dir);
        actions.add("discarded " + dir.getFileName());
    }

    private boolean holdsOnlyLogs(Path dir) throws IOException {
        try (var s = Files.list(dir)) {
            return s.allMatch(p -> logs.contains(p.getFileName().toString()) && Files.isRegularFile(p));
        }
    }

    private void truncateLogs(CheckpointManifest m) throws IOException {
        for (var e : m.logs().entrySet()) {
            if (!logs.contains(e.getKey())) continue;
            Path log = target.resolve(e.getKey());
            try (FileChannel ch = FileChannel.open(log, StandardOpenOption.WRITE)) {
                if (ch.size() > e.getValue()) {
                    ch.truncate(e.getValue());
                    ch.force(true);
                }
            } catch (NoSuchFileException gone) {
                // a fresh run removed the log; nothing to truncate
            }
        }
    }
}
