package dev.exeunt.tensor;
import org.junit.jupiter.api.Test;
import static org.junit.jupiter.api.Assertions.*;
class SmokeTest { @Test void vector() { assertTrue(jdk.incubator.vector.FloatVector.SPECIES_PREFERRED.length() >= 4); } }
