package dev.exeunt.ffm.loader;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.lang.foreign.SymbolLookup;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class NativeLibrariesTest {

    @TempDir
    Path tmp;

    private static Path touch(Path p) throws IOException {
        Files.createDirectories(p.getParent());
        return Files.writeString(p, "not really a shared object");
    }

    @Test
    void explicitPathToMissingFileListsIt() {
        LibrarySpec spec = LibrarySpec.of("foo", "libfoo.so.2");
        String missing = tmp.resolve("nope/libfoo.so.2").toString();
        NativeLibraryException e = assertThrows(NativeLibraryException.class,
                () -> NativeLibraries.locate(spec, missing, List.of(tmp)));
        assertEquals("foo", e.libraryName());
        assertTrue(e.getMessage().contains(missing + " (no such file)"), e.getMessage());
        assertTrue(e.getMessage().contains("-Dexeunt.foo.path"), e.getMessage());
        assertTrue(e.getMessage().contains("EXEUNT_FOO_PATH"), e.getMessage());
        // an explicit path is not a hint: the directories are not searched
        assertEquals(1, e.placesLooked().size(), e.placesLooked().toString());
    }

    @Test
    void explicitPathThatExistsWins() throws IOException {
        Path explicit = touch(tmp.resolve("elsewhere/custom-name.so"));
        touch(tmp.resolve("dir/libfoo.so.2"));
        assertEquals(explicit, NativeLibraries.locate(LibrarySpec.of("foo", "libfoo.so.2"), explicit.toString(), List.of(tmp.resolve("dir"))));
    }

    @Test
    void sonameFoundInSecondDirectory() throws IOException {
        Path empty = Files.createDirectories(tmp.resolve("a"));
        Path lib = touch(tmp.resolve("b/libfoo.so.2"));
        LibrarySpec spec = LibrarySpec.of("foo", "libfoo.so.3", "libfoo.so.2");
        assertEquals(lib, NativeLibraries.locate(spec, null, List.of(tmp.resolve("missing"), empty, lib.getParent())));
    }

    @Test
    void firstDirectoryWinsAndNamesKeepTheirOrder() throws IOException {
        Path first = touch(tmp.resolve("one/libfoo.so.2"));
        touch(tmp.resolve("two/libfoo.so.3"));
        touch(tmp.resolve("one/libfoo.so.3"));
        LibrarySpec spec = LibrarySpec.of("foo", "libfoo.so.3", "libfoo.so.2");
        NativeLibraries.Search s = NativeLibraries.search(spec, null, List.of(tmp.resolve("one"), tmp.resolve("two")));
        assertEquals(List.of(tmp.resolve("one/libfoo.so.3"), first, tmp.resolve("two/libfoo.so.3")), s.found());
    }

    @Test
    void globFindsHighestVersionAfterNamedFiles() throws IOException {
        touch(tmp.resolve("libnvrtc-builtins.so.12.4"));
        touch(tmp.resolve("libnvrtc-builtins.so.12.10"));
        touch(tmp.resolve("libnvrtc-builtins.so.12.4.alt")); // not a version: ignored
        LibrarySpec spec = LibrarySpec.of("nvrtc-builtins");
        assertEquals(List.of(tmp.resolve("libnvrtc-builtins.so.12.10"), tmp.resolve("libnvrtc-builtins.so.12.4")),
                NativeLibraries.search(spec, null, List.of(tmp)).found());
    }

    @Test
    void noGlobWhenDisabled() throws IOException {
        touch(tmp.resolve("libmpi.so.12")); // MPICH: must not be picked for Open MPI
        LibrarySpec spec = LibrarySpec.of("mpi", "libmpi.so.40").withGlobPrefix(null);
        assertTrue(NativeLibraries.search(spec, null, List.of(tmp)).found().isEmpty());
    }

    @Test
    void missingLibraryMessageListsEveryPlace() throws IOException {
        Path a = Files.createDirectories(tmp.resolve("a"));
        Path b = tmp.resolve("b-missing");
        NativeLibraryException e = assertThrows(NativeLibraryException.class,
                () -> NativeLibraries.locate(LibrarySpec.of("foo", "libfoo.so.2"), null, List.of(a, b)));
        String m = e.getMessage();
        assertTrue(m.startsWith("Native library 'foo'"), m);
        assertTrue(m.contains(a + " (none of libfoo.so.2, libfoo.so.*)"), m);
        assertTrue(m.contains(b + " (no such directory)"), m);
        assertTrue(m.contains("not set"), m);
    }

    @Test
    void fileThatFailsToOpenIsReportedAndNextCandidateTried() throws IOException {
        Path bogus = touch(tmp.resolve("bad/libfoo.so.2"));
        NativeLibraryException e = assertThrows(NativeLibraryException.class,
                () -> NativeLibraries.open(LibrarySpec.of("foo", "libfoo.so.2"), null, List.of(bogus.getParent()), false));
        assertTrue(e.getMessage().contains(bogus + ": could not be opened"), e.getMessage());
    }

    @Test
    void opensARealLibraryAndItsDependencyFromTheSameDirectory() {
        Path dir = Path.of("/usr/lib/x86_64-linux-gnu");
        assumeTrue(Files.isRegularFile(dir.resolve("libm.so.6")) && Files.isRegularFile(dir.resolve("libc.so.6")), "no glibc in " + dir);
        NativeLibraries.register(LibrarySpec.of("test-c", "libc.so.6"));
        LibrarySpec spec = LibrarySpec.of("test-m", "libm.so.6").withDependencies("test-c");
        NativeLibraries.Loaded loaded = NativeLibraries.open(spec, null, List.of(tmp, dir), false);
        assertEquals(dir.resolve("libm.so.6"), loaded.path());
        SymbolLookup lookup = loaded.lookup();
        assertTrue(lookup.find("cos").isPresent());
        assertTrue(NativeLibraries.isAvailable("test-c"), "dependency opened and cached");
    }

    @Test
    void overrideNamesFollowTheLibraryName() {
        assertEquals("exeunt.cublasLt.path", NativeLibraries.spec("cublasLt").propertyName());
        assertEquals("EXEUNT_CUBLASLT_PATH", NativeLibraries.spec("cublasLt").environmentVariable());
        assertEquals("EXEUNT_NVRTC_BUILTINS_PATH", NativeLibraries.spec("nvrtc-builtins").environmentVariable());
    }

    @Test
    void unknownLibraryIsUnavailableWithAReasonAndCachesIt() {
        String name = "exeunt-does-not-exist-" + ProcessHandle.current().pid();
        String reason = NativeLibraries.unavailableReason(name);
        assertTrue(reason != null && reason.contains("Native library '" + name + "'") && reason.contains("/usr/local/cuda/lib64"), reason);
        NativeLibraryException e1 = assertThrows(NativeLibraryException.class, () -> NativeLibraries.load(name));
        NativeLibraryException e2 = assertThrows(NativeLibraryException.class, () -> NativeLibraries.load(name));
        assertTrue(e1 == e2, "failures are cached");
    }

    @Test
    void systemPropertyIsHonoured() throws IOException {
        String name = "exeunt-prop-test";
        Path missing = tmp.resolve("libprop.so");
        System.setProperty("exeunt." + name + ".path", missing.toString());
        try {
            NativeLibraries.register(LibrarySpec.of(name, "libprop.so"));
            String reason = NativeLibraries.unavailableReason(name);
            assertTrue(reason != null && reason.contains("-Dexeunt." + name + ".path = " + missing + " (no such file)"), reason);
        } finally {
            System.clearProperty("exeunt." + name + ".path");
        }
    }
}
