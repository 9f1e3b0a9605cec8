// The WeChat mini-program bridge for a page opened in a <web-view>.
//
// The JSSDK (jweixin, which defines window.wx.miniProgram) is NOT bundled: it is WeChat's
// code. The integrator either vendors the official file as clients/h5/vendor/jweixin.js
// (loaded below, same origin, so the strict CSP still holds) or includes it from WeChat's
// official URL in a host page whose CSP allows it. Without it every call here is a no-op.

export function inMiniProgram() {
  return window.__wxjs_environment === 'miniprogram' || /miniProgram/i.test(navigator.userAgent || '');
}

function miniProgram() {
  const wx = window.wx;
  return wx && wx.miniProgram ? wx.miniProgram : null;
}

let loading = null;

/** Inside a mini-program web-view without wx yet, try the vendored JSSDK once. */
export function loadBridge() {
  if (!inMiniProgram() || miniProgram()) return Promise.resolve(miniProgram());
  if (!loading) {
    loading = new Promise((resolve) => {
      const script = document.createElement('script');
      script.src = 'vendor/jweixin.js';
      script.onload = () => resolve(miniProgram());
      script.onerror = () => {
        script.remove();
        resolve(null);
      };
      document.head.appendChild(script);
    });
  }
  return loading;
}

/**
 * Tell the mini-program about the latest answer. WeChat delivers these messages to the
 * <web-view bindmessage> handler at specific moments (navigating back, sharing, the
 * component being destroyed), not immediately.
 */
export function postAnswer(conversationId, messageId) {
  const mp = miniProgram();
  if (!mp || typeof mp.postMessage !== 'function') return false;
  try {
    mp.postMessage({ data: { conversationId, messageId } });
    return true;
  } catch (_) {
    return false;
  }
}

export function navigateBack() {
  const mp = miniProgram();
  if (!mp || typeof mp.navigateBack !== 'function') return false;
  try {
    mp.navigateBack();
    return true;
  } catch (_) {
    return false;
  }
}
