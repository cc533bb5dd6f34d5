// Loaded before require.js, MathJax and the Jupyter widgets manager (book/_ext/offline_assets.py), for two reasons.
//
// 1. The widgets bundle is an AMD module named "@jupyter-widgets/html-manager/dist/..."; it resolves its icon
//    fonts against that name, which require.js would place next to the page (404s). A global `require` object
//    set before require.js loads is its configuration: map the name onto our local copy, next to this script.
(function () {
  var me = document.currentScript && document.currentScript.src;
  if (!me) return;
  var dist = me.replace(/[^/]*$/, "") + "vendor/@jupyter-widgets/html-manager/dist";
  // The bundle's other modules ("@jupyter-widgets/controls", ...) resolve their fonts the same way.
  window.require = { paths: { "@jupyter-widgets/html-manager/dist": dist, "@jupyter-widgets": dist } };
  window.__jupyter_widgets_assets_path__ = dist + "/";
})();

// 2. ipywidgets 8 typesets widget labels with the MathJax 2 API (MathJax.Hub.Queue), which MathJax 3 lacks:
//    without this shim every widget page logs "Cannot read properties of undefined (reading 'Queue')".
//    We give whatever object `window.MathJax` holds (the config first, then MathJax 3 itself) a tiny Hub that
//    forwards "Typeset" jobs to MathJax 3's typesetPromise.
(function () {
  var hub = {
    Queue: function () {
      for (var i = 0; i < arguments.length; i++) {
        var job = arguments[i];
        var mj = window.MathJax;
        if (Array.isArray(job) && job[0] === "Typeset" && mj && mj.typesetPromise) {
          mj.typesetPromise([job[2]]).catch(function () {});
        }
      }
    },
  };
  var current = window.MathJax;
  function withHub(v) {
    if (v && typeof v === "object" && !v.Hub) {
      Object.defineProperty(v, "Hub", { value: hub, enumerable: false, configurable: true });
    }
    return v;
  }
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return current; },
    set: function (v) { current = withHub(v); },
  });
  withHub(current);
})();
