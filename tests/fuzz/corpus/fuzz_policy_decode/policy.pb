€æþ‰" 0123456789abcdef0123456789abcdef*=
work

camera
display"*2
 :Rssid*
personal

camera8