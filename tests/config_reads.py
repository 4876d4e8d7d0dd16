"""Which `DapConfig` sections a function reads, found statically (ast) across `dap_model` and
`dap_assets`: the check behind the `reads` column of `dap_assets/dvc_stages.py`.

A value is *the config* when it is a parameter that received the config at a call site, the result
of `<DapConfigResource>.get()`, of a function annotated `-> DapConfig` (`load_config`,
`config_from_args`, ...) or of `<config>.model_copy(...)`. `<config>.<section>` is a read of that
section. When the config itself is passed to a function of this project, that function is followed
with the receiving parameter as the config (memoised per function and parameter). Methods that
serialise the whole config for provenance (`digest`, `to_yaml`, `flat`, `model_dump*`) are not
section reads. Anything the analysis cannot follow (the config passed to an outside function,
stored on an object, returned) is reported in `escapes`, so a gap shows up instead of hiding."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dap_model", "dap_assets")
PROVENANCE_METHODS = {"digest", "to_yaml", "flat", "model_dump", "model_dump_json"}
CONFIG_FACTORIES = {"model_copy", "get"}  # `<config>.model_copy()`, `<DapConfigResource>.get()`
RESOURCE = "DapConfigResource"
NOT_SECTIONS = {"profile", "overrides"}  # the profile name and run-config overrides (handed to a subprocess)


def _sections() -> set[str]:
    from pydantic import BaseModel

    from dap_model.config import DapConfig

    return {n for n, f in DapConfig.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}


@dataclass
class Module:
    name: str
    tree: ast.Module
    path: Path
    functions: dict[str, ast.FunctionDef] = field(default_factory=dict)   # "f" and "Class.f"
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)
    imports: dict[str, str] = field(default_factory=dict)                 # local name -> "mod" or "mod:attr"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _index() -> dict[str, Module]:
    mods: dict[str, Module] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = _module_name(path)
            m = Module(name, ast.parse(path.read_text(), str(path)), path)
            is_pkg = path.name == "__init__.py"
            for node in m.tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    m.functions[node.name] = node
                elif isinstance(node, ast.ClassDef):
                    m.classes[node.name] = node
                    for item in node.body:
                        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                            m.functions[f"{node.name}.{item.name}"] = item
            for node in ast.walk(m.tree):  # imports anywhere, function-level ones included
                if isinstance(node, ast.Import):
                    for a in node.names:
                        m.imports[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        pkg_parts = name.split(".") if is_pkg else name.split(".")[:-1]
                        pkg_parts = pkg_parts[: len(pkg_parts) - node.level + 1]
                        base = ".".join([*pkg_parts, *([base] if base else [])])
                    for a in node.names:
                        m.imports[a.asname or a.name] = f"{base}:{a.name}"
            mods[name] = m
    return mods


@dataclass
class Reads:
    sections: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)   # "module:qualname" followed with the config
    escapes: set[str] = field(default_factory=set)     # "module:line what"
    returns: set[int | None] = field(default_factory=set)  # the config returned: whole (None) or tuple item i


class ConfigReads:
    def __init__(self) -> None:
        self.mods = _index()
        self.sections = _sections()
        self._memo: dict[tuple[str, str, str], Reads] = {}

    # -- name resolution -------------------------------------------------------------------
    def _lookup(self, target: str, depth: int = 0):
        """`"mod:attr"` -> ("function", Module, qualname) | ("class", Module, name) | ("module", Module) | None."""
        if depth > 8:
            return None
        mod_name, _, attr = target.partition(":")
        if not attr:
            return ("module", self.mods[mod_name]) if mod_name in self.mods else None
        if f"{mod_name}.{attr}" in self.mods:
            return ("module", self.mods[f"{mod_name}.{attr}"])
        m = self.mods.get(mod_name)
        if m is None:
            return None
        if attr in m.functions:
            return ("function", m, attr)
        if attr in m.classes:
            return ("class", m, attr)
        if attr in m.imports:
            return self._lookup(m.imports[attr], depth + 1)
        return None

    def _resolve(self, m: Module, cls: str | None, func: ast.expr):
        """The project function a call goes to: (Module, qualname, params skipped) or None."""
        found = None
        if isinstance(func, ast.Name):
            if func.id in m.functions:
                found = ("function", m, func.id)
            elif func.id in m.classes:
                found = ("class", m, func.id)
            elif func.id in m.imports:
                found = self._lookup(m.imports[func.id])
        elif isinstance(func, ast.Attribute):
            if isinstance(func.value, ast.Name) and func.value.id in ("self", "cls") and cls:
                if f"{cls}.{func.attr}" in m.functions:
                    return m, f"{cls}.{func.attr}", 1
            base = self._resolve_value(m, func.value)
            if base is not None and base[0] == "module":
                found = self._lookup(f"{base[1].name}:{func.attr}")
            elif base is not None and base[0] == "class":
                bm, bc = base[1], base[2]
                if f"{bc}.{func.attr}" in bm.functions:
                    fn = bm.functions[f"{bc}.{func.attr}"]
                    skip = 1 if any(isinstance(d, ast.Name) and d.id == "classmethod" for d in fn.decorator_list) else 0
                    return bm, f"{bc}.{func.attr}", skip
        if found is None:
            return None
        if found[0] == "function":
            return found[1], found[2], 0
        if found[0] == "class" and f"{found[2]}.__init__" in found[1].functions:
            return found[1], f"{found[2]}.__init__", 1
        return None

    def _resolve_value(self, m: Module, node: ast.expr):
        if isinstance(node, ast.Name) and node.id in m.imports:
            return self._lookup(m.imports[node.id])
        if isinstance(node, ast.Name) and node.id in m.classes:
            return ("class", m, node.id)
        if isinstance(node, ast.Attribute):
            base = self._resolve_value(m, node.value)
            if base is not None and base[0] == "module":
                return self._lookup(f"{base[1].name}:{node.attr}")
        return None

    # -- the analysis ----------------------------------------------------------------------
    def _returns_config(self, m: Module, cls: str | None, call: ast.Call, depth: int = 0) -> bool:
        """A call whose result is the config: annotated `-> DapConfig`, or returning such a call."""
        target = self._resolve(m, cls, call.func)
        if target is None or depth > 4:
            return False
        tm, tq, _ = target
        fn = tm.functions[tq]
        if fn.returns is not None:
            return "DapConfig" in ast.unparse(fn.returns) and "Resource" not in ast.unparse(fn.returns)
        tcls = tq.split(".")[0] if "." in tq else None
        return any(isinstance(r, ast.Return) and isinstance(r.value, ast.Call)
                   and self._returns_config(tm, tcls, r.value, depth + 1) for r in ast.walk(fn))

    def _returned(self, m: Module, cls: str | None, call: ast.Call, is_config) -> set[int | None]:
        """Where a project function called with the config returns it (see `Reads.returns`)."""
        target = self._resolve(m, cls, call.func)
        if target is None:
            return set()
        tm, tq, skip = target
        tfn = tm.functions[tq]
        params = [p.arg for p in [*tfn.args.posonlyargs, *tfn.args.args]][skip:]
        back: set[int | None] = set()
        for i, a in enumerate(call.args):
            if is_config(a) and i < len(params):
                back |= self.reads_of(tm.name, tq, params[i]).returns
        for k in call.keywords:
            if is_config(k.value) and k.arg in params:
                back |= self.reads_of(tm.name, tq, k.arg).returns
        return back

    def reads_of(self, module: str, qualname: str, param: str | None = None) -> Reads:
        """Sections read by `module:qualname`, with `param` (or, for None, only the values it
        makes itself from `.get()` / `load_config`) as the config."""
        key = (module, qualname, param or "")
        if key in self._memo:
            return self._memo[key]
        out = Reads(functions={f"{module}:{qualname}"})
        self._memo[key] = out  # recursion guard
        m = self.mods[module]
        fn = m.functions[qualname]
        cls = qualname.split(".")[0] if "." in qualname else None
        names: set[str] = {param} if param else set()
        if param is None:  # an asset: its `DapConfigResource` parameter hands out the config (`.get()`)
            names |= {a.arg for a in fn.args.args if a.annotation is not None
                      and ast.unparse(a.annotation) == RESOURCE}
        parents = {id(c): p for p in ast.walk(fn) for c in ast.iter_child_nodes(p)}

        def is_config(node: ast.expr) -> bool:
            if isinstance(node, ast.Name):
                return node.id in names
            if isinstance(node, ast.Call):
                if isinstance(node.func, ast.Attribute) and node.func.attr in CONFIG_FACTORIES and is_config(node.func.value):
                    return True
                return self._returns_config(m, cls, node)
            return False

        # bindings first (to a fixed point: `cfg = ...; c2 = cfg`), then reads and calls
        changed = True
        while changed:
            changed = False
            for node in ast.walk(fn):
                if isinstance(node, ast.Assign):
                    pairs = []
                    for t in node.targets:
                        if isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple):
                            pairs += list(zip(t.elts, node.value.elts))
                        else:
                            pairs.append((t, node.value))
                    for t, v in pairs:
                        if isinstance(t, ast.Name) and t.id not in names and is_config(v):
                            names.add(t.id)
                            changed = True
                    if len(node.targets) == 1 and isinstance(node.value, ast.Call):
                        back = self._returned(m, cls, node.value, is_config)
                        t = node.targets[0]
                        got = [t] if None in back else [t.elts[i] for i in back
                                                        if i is not None and isinstance(t, ast.Tuple) and i < len(t.elts)]
                        for g in got:
                            if isinstance(g, ast.Name) and g.id not in names:
                                names.add(g.id)
                                changed = True
                elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                    if node.target.id not in names and is_config(node.value):
                        names.add(node.target.id)
                        changed = True

        consumed: set[int] = set()  # ids of config nodes accounted for

        def deferred_calls():
            """`(function, *args)` tuples handed to an executor (`executor.submit(*job)`): calls."""
            for t in ast.walk(fn):
                if isinstance(t, ast.Tuple) and t.elts and not isinstance(t.elts[0], ast.Starred) \
                        and self._resolve(m, cls, t.elts[0]) is not None:
                    yield ast.Call(func=t.elts[0], args=t.elts[1:], keywords=[], lineno=t.lineno)

        for node in [*ast.walk(fn), *deferred_calls()]:
            if isinstance(node, ast.Attribute) and is_config(node.value):
                consumed.add(id(node.value))
                if node.attr in self.sections:
                    out.sections.add(node.attr)
                elif node.attr not in PROVENANCE_METHODS | CONFIG_FACTORIES | NOT_SECTIONS:
                    out.escapes.add(f"{module}:{node.lineno} .{node.attr} of the config")
            elif isinstance(node, ast.Call):
                args = [(i, a) for i, a in enumerate(node.args)] + [(k.arg, k.value) for k in node.keywords]
                for pos, a in args:
                    if not is_config(a):
                        continue
                    consumed.add(id(a))
                    target = self._resolve(m, cls, node.func)
                    if target is None:
                        out.escapes.add(f"{module}:{node.lineno} passed to {ast.unparse(node.func)}")
                        continue
                    tm, tq, skip = target
                    tfn = tm.functions[tq]
                    params = [p.arg for p in [*tfn.args.posonlyargs, *tfn.args.args]][skip:]
                    if isinstance(pos, int):
                        recv = params[pos] if pos < len(params) else (tfn.args.vararg.arg if tfn.args.vararg else None)
                    else:
                        recv = pos if pos in params or pos in [p.arg for p in tfn.args.kwonlyargs] else None
                    if recv is None:
                        out.escapes.add(f"{module}:{node.lineno} {ast.unparse(node.func)} has no parameter for the config")
                        continue
                    sub = self.reads_of(tm.name, tq, recv)
                    out.sections |= sub.sections
                    out.functions |= sub.functions
                    out.escapes |= sub.escapes
        for node in ast.walk(fn):  # the config going anywhere else: stored, returned, put in a container
            parent = parents.get(id(node))
            if isinstance(node, ast.Name) and node.id in names and isinstance(parent, ast.Return):
                out.returns.add(None)
                continue
            if isinstance(node, ast.Name) and node.id in names and isinstance(parent, ast.Tuple) \
                    and isinstance(parents.get(id(parent)), ast.Return):
                out.returns.add(parent.elts.index(node))
                continue
            if isinstance(node, ast.Name) and node.id in names and isinstance(node.ctx, ast.Load) \
                    and id(node) not in consumed and not isinstance(parent, (ast.Compare, ast.BoolOp)):
                out.escapes.add(f"{module}:{node.lineno} config `{node.id}` used as a value")
        return out


def asset_reads(analysis: ConfigReads, asset_fn) -> Reads:
    """Reads of a Dagster asset's compute function (`asset.op.compute_fn.decorated_fn`)."""
    import inspect

    module = asset_fn.__module__
    return analysis.reads_of(module, asset_fn.__name__) if inspect.isfunction(asset_fn) else Reads()
