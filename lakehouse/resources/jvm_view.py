"""The JVM classes PySpark looks up on every call, kept by its JVM view instead of asked again.

PySpark 3.5 reaches some JVM classes through py4j's view of the JVM at every call:
`jvm.functions` for every column function (F.col, F.lit, F.when...), `jvm.PythonUtils` for
every list of columns, `jvm.SparkSession`. py4j asks the JVM each time, a round trip, and a
short name first misses as a class of its own, which makes the JVM search every jar on its
classpath (py4j 0.10.9.9's TypeUtil.getClass); the method then taken from the class is another
round trip. A class and its methods do not change while the JVM lives, so the view keeps the
proxies it answered with. Hand-written: py4j has no such cache. On the oracle's five Spark
days the view then asked the JVM 1,085 times instead of 26,227 (README, Engines).

Packages are not kept: py4j answers "package" for any name that is not (yet) a class, such as
one a jar added later brings, and PySpark reads that answer's type in its errors. Spark 4.0
names the classes in full (SPARK-48475, SPARK-50685), which py4j then answers as before.
"""

from __future__ import annotations

from py4j.java_gateway import JavaClass, JavaMember

from lakehouse.memo import remembered

KEPT_CLASSES = {"functions": "org.apache.spark.sql.functions", "PythonUtils": "org.apache.spark.api.python.PythonUtils",
                "SparkSession": "org.apache.spark.sql.SparkSession"}
_views: dict = {}  # (id(JVM view),) -> (view, True): `remembered`


class KeptClass(JavaClass):
    """A JVM class whose static methods and nested classes, once asked for, are kept. A field is
    asked for each time: its value may change."""

    def __getattr__(self, name):
        found = super().__getattr__(name)
        if isinstance(found, JavaClass):
            found = self.__dict__[name] = KeptClass(found._fqn, self._gateway_client)
        elif isinstance(found, JavaMember):
            self.__dict__[name] = found
        return found


def keep_names(session) -> None:
    """KEPT_CLASSES kept by the JVM view PySpark uses, once per view (a process has
    one: a session started again keeps it); also on a session a cluster or dagster-pyspark made.
    Only a class the JVM has is kept: on another Spark build the view answers that name as before."""

    def kept() -> bool:
        client = jvm._gateway_client
        for short, name in KEPT_CLASSES.items():
            if isinstance(getattr(jvm, name), JavaClass):  # by its full name: found, or a JavaPackage
                jvm.__dict__[short] = KeptClass(name, client)
        return True

    jvm = session.sparkContext._jvm
    remembered(_views, (id(jvm),), jvm, kept)
